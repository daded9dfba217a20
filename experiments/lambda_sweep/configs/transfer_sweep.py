"""The fields shared by the Fashion-MNIST sweep configs (``mlp.py``, ``vit.py``)."""

from __future__ import annotations

from collections.abc import Sequence

import ml_collections


def sweep_config(
    task: str, mode: str, *, ratios: Sequence[float], ref_scales: Sequence[float]
) -> ml_collections.ConfigDict:
    """The sweep settings on top of the pipeline's own config
    (``experiments/<task>/configs/fashion_mnist_offline.py``, its ``quick`` in quick mode)."""
    if mode not in ("full", "quick"):
        raise ValueError(f"mode must be full or quick, got {mode!r}")
    quick = mode == "quick"
    c = ml_collections.ConfigDict()
    c.task = task
    c.quick = quick
    c.methods = ("profit",)  # labels of the pipeline config's methods (registry names)
    c.seeds = ()  # empty: the pipeline config's seeds
    c.num_steps = 0  # 0: the pipeline config's finetune.num_steps
    c.ratios = (1e-2,) if quick else tuple(ratios)
    c.ref_scales = () if quick else tuple(ref_scales)
    c.x64 = False  # fine-tune in float64 from the float32-pretrained checkpoint
    return c
