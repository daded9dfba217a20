"""λ_ref sensitivity sweep on the Fashion-MNIST MLP (classes 0-4 -> 5-9).

The ``profit`` entry of ``experiments/mlp/configs/fashion_mnist_offline.py`` (Adam, λ_main =
3e-4): fixed SGD reference λ_ref = λ_main × ratio and the automatic reference step at several
``ref_scale`` values, one shared pretraining, the config's seeds and update calls. See
:mod:`experiments.lambda_sweep.transfer` for the protocol (validation = half of each test split).

Usage::

    python -m experiments.lambda_sweep.mlp [--quick] [--seeds 0 1 2] [--out DIR] [--workdir DIR]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from experiments.lambda_sweep import transfer
from experiments.mlp.configs.fashion_mnist_offline import get_config
from experiments.mlp.main import build_model

RATIOS = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7)
REF_SCALES = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """CLI entry point; returns the summary."""
    return transfer.main(
        "mlp", get_config, build_model, ratios=RATIOS, ref_scales=REF_SCALES, argv=argv
    )


if __name__ == "__main__":
    main()
