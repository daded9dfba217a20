"""λ_ref sensitivity sweep on the Fashion-MNIST ViT-mini (classes 0-4 -> 5-9).

The ``profit`` entry of ``experiments/vit/configs/fashion_mnist_offline.py`` (Adam, λ_main =
3e-4): fixed SGD reference λ_ref = λ_main × ratio and the automatic reference step (default
``ref_scale`` only, by default: CPU time), one shared pretraining (``--pretrained-from`` reuses an
existing pipeline workdir's checkpoint), the config's update calls. See
:mod:`experiments.lambda_sweep.transfer` for the protocol (validation = half of each test split).

Usage::

    python -m experiments.lambda_sweep.vit [--quick] [--seeds 0 1] [--pretrained-from DIR]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from experiments.lambda_sweep import transfer
from experiments.vit.configs.fashion_mnist_offline import get_config
from experiments.vit.main import build_model

RATIOS = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
REF_SCALES = ()


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """CLI entry point; returns the summary."""
    return transfer.main(
        "vit", get_config, build_model, ratios=RATIOS, ref_scales=REF_SCALES, argv=argv
    )


if __name__ == "__main__":
    main()
