"""The λ_ref sweep on the 2D toy: ``python -m experiments.lambda_sweep.toy2d``.

Usage (``--config.<field>=value`` overrides any field)::

    python -m experiments.lambda_sweep.toy2d \\
        [--config=experiments/lambda_sweep/configs/toy2d.py[:quick]]
        [--config.x64=True] [--config.ratios="(1e-2,1e-3)"] [--config.ref_scales="(0.01,)"]
"""

from __future__ import annotations

import ml_collections

from experiments.toy2d import config as toy_config

#: λ_ref / λ_main of the fixed reference learning rates.
RATIOS = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7)
#: ``ref_scale`` values of the automatic rule (the core's default is always added).
REF_SCALES = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)


def get_config(mode: str = "full") -> ml_collections.ConfigDict:
    """``full`` (the committed sweep) or ``quick`` (the toy's quick config, a tiny grid)."""
    if mode not in ("full", "quick"):
        raise ValueError(f"mode must be full or quick, got {mode!r}")
    quick = mode == "quick"
    c = ml_collections.ConfigDict()
    c.task = "toy2d"
    c.quick = quick
    c.toy = toy_config.get_config(mode)  # data, model, pretraining, budget, the methods' hparams
    c.methods = ("profit", "profit_sgd")  # entries of c.toy.methods
    c.seeds = (0,) if quick else (0, 1, 2, 3, 4)
    c.ratios = (1e-2, 1e-4) if quick else RATIOS
    c.ref_scales = (0.1,) if quick else REF_SCALES
    c.x64 = False  # fine-tune in float64 from the float32-pretrained models
    return c
