"""The λ_ref sweep on the Fashion-MNIST ViT-mini: ``python -m experiments.lambda_sweep.vit``.

Usage (``--config.<field>=value`` overrides any field)::

    python -m experiments.lambda_sweep.vit \\
        [--config=experiments/lambda_sweep/configs/vit.py[:quick]]
        [--config.seeds="(0,1)"] [--config.x64=True] [--pretrained_from=DIR] [--out=DIR]
"""

from __future__ import annotations

import ml_collections

from experiments.lambda_sweep.configs import transfer_sweep

RATIOS = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5)
REF_SCALES = ()  # the default ref_scale only (CPU time)


def get_config(mode: str = "full") -> ml_collections.ConfigDict:
    """``full`` (the committed sweep) or ``quick`` (the pipeline's quick config, a tiny grid)."""
    return transfer_sweep.sweep_config("vit", mode, ratios=RATIOS, ref_scales=REF_SCALES)
