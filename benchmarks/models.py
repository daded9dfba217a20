"""The experiment models, as (loss function, parameters, batch) for step benchmarks.

Built from ``experiments.vit.model``, ``experiments.mlp.model`` and
``experiments.lm.model`` (the models the fine-tuning experiments train), with
random inputs of the experiments' shapes. Nothing is downloaded.

A language-model workload's ``params`` are its trainable parameters only: every
parameter (``lm_full``) or the LoRA adapters (``lm_lora``, ``nnx.LoRAParam``),
the split ``nnx.Optimizer(model, tx, wrt=...)`` makes. The frozen rest travels in
the batch (``(rest, windows)``), an argument of the compiled step rather than a
constant baked into it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax


@dataclass
class Workload:
    name: str
    loss_fn: Callable[[Any, Any], jax.Array]  # (params, batch) -> scalar
    params: Any
    batch: Any
    description: str


# name -> (kind, constructor kwargs, image shape, num classes, batch size, description)
WORKLOADS: dict[str, tuple] = {
    "mlp_fmnist": (
        "mlp",
        {"hidden": (256, 256)},
        (28, 28, 1),
        10,
        128,
        "MLP 784-256-256-10 (experiments/mlp, Fashion-MNIST config), batch 128",
    ),
    "vit_mini_fmnist": (
        "vit",
        {"variant": "mini", "patch_size": 7},
        (28, 28, 1),
        10,
        128,
        "ViT-mini/7 (width 64, depth 4; experiments/vit Fashion-MNIST config), batch 128",
    ),
    "vit_ti_cifar": (
        "vit",
        {"variant": "Ti", "patch_size": 4},
        (32, 32, 3),
        100,
        32,
        "ViT-Ti/4 (width 192, depth 12; experiments/vit CIFAR-100 config), batch 32 "
        "(the config's 256 is a GPU batch)",
    ),
    "lm_full": (
        "lm",
        {"config": "small", "lora_rank": None},
        None,
        None,
        16,
        "byte-level transformer LM, width 128, depth 4, context 128 (experiments/lm), "
        "full fine-tuning, batch 16",
    ),
    "lm_lora": (
        "lm",
        {"config": "small", "lora_rank": 8},
        None,
        None,
        16,
        "byte-level transformer LM, width 128, depth 4, context 128 (experiments/lm), "
        "LoRA rank 8 on every attention and MLP projection (adapters trained), batch 16",
    ),
}


def make_workload(name: str, *, batch_size: int | None = None, seed: int = 0) -> Workload:
    kind, kwargs, shape, num_classes, default_bs, desc = WORKLOADS[name]
    bs = batch_size or default_bs
    if batch_size and batch_size != default_bs:
        desc = desc.rsplit(", batch", 1)[0] + f", batch {bs}"
    if kind == "lm":
        return _lm_workload(name, kwargs["config"], kwargs["lora_rank"], bs, seed, desc)
    if kind == "mlp":
        from experiments.mlp.model import MLP

        model = MLP(num_classes=num_classes, **kwargs)
    else:
        from experiments.vit.model import vit

        model = vit(kwargs["variant"], num_classes, patch_size=kwargs["patch_size"])
    k_init, k_x, k_y = jax.random.split(jax.random.key(seed), 3)
    images = jax.random.normal(k_x, (bs, *shape), jnp.float32)
    labels = jax.random.randint(k_y, (bs,), 0, num_classes)
    params = model.init(k_init, images[:1])["params"]

    def loss_fn(p, batch):
        x, y = batch
        logits = model.apply({"params": p}, x, train=False)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    return Workload(name, loss_fn, params, (images, labels), desc)


def _lm_workload(
    name: str, config: str, lora_rank: int | None, bs: int, seed: int, desc: str
) -> Workload:
    from flax import nnx

    from experiments.lm import model as M

    cfg = M.LMConfig.named(config)
    model = M.make_model(cfg, seed)
    wrt: type = nnx.Param
    if lora_rank is not None:
        model, wrt = M.with_lora(model, lora_rank, seed=seed + 1), nnx.LoRAParam
    fn = M.functional(model, wrt)
    rng = np.random.default_rng(seed)
    windows = jnp.asarray(rng.integers(0, 256, (bs, cfg.context + 1)), jnp.int32)

    def loss_fn(p, batch):
        rest, w = batch
        return M.next_byte_loss(replace(fn, rest=rest).model(p), w)

    return Workload(name, loss_fn, fn.params, (fn.rest, windows), desc)
