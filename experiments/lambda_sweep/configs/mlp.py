"""The λ_ref sweep on the Fashion-MNIST MLP: ``python -m experiments.lambda_sweep.mlp``.

Usage (``--config.<field>=value`` overrides any field)::

    python -m experiments.lambda_sweep.mlp \\
        [--config=experiments/lambda_sweep/configs/mlp.py[:quick]]
        [--config.seeds="(0,1,2)"] [--config.x64=True] [--workdir=DIR] [--out=DIR]
"""

from __future__ import annotations

import ml_collections

from experiments.lambda_sweep.configs import transfer_sweep

RATIOS = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7)
REF_SCALES = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)


def get_config(mode: str = "full") -> ml_collections.ConfigDict:
    """``full`` (the committed sweep) or ``quick`` (the pipeline's quick config, a tiny grid)."""
    return transfer_sweep.sweep_config("mlp", mode, ratios=RATIOS, ref_scales=REF_SCALES)
