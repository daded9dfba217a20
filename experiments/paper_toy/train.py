"""The paper toy's training loops: pretraining from scratch and fine-tuning with a registry
method, each a jitted ``lax.scan`` over chunks of mini-batch indices."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from experiments.common.train import MethodLike
from experiments.paper_toy.data import Split, ToyData, batch_indices
from experiments.paper_toy.model import mse

Params = Any


def _scan_steps(
    step: Callable[[Any, jax.Array], tuple[Any, jax.Array]],
) -> Callable[[Any, jax.Array], tuple[Any, jax.Array]]:
    """jit(scan(step)) over a chunk of batch indices ``[chunk, batch]``."""
    return jax.jit(lambda carry, idx: jax.lax.scan(step, carry, idx))


def _chunks(total: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, total)) for s in range(0, total, size)]


def init_params(model: nn.Module, seed: int) -> Params:
    """Initial MLP parameters for ``seed``."""
    return model.init(jax.random.key(seed), jnp.zeros((1, 2), jnp.float32))["params"]


def train_from_scratch(
    model: nn.Module,
    data: ToyData,
    tx: optax.GradientTransformation,
    steps: int,
    batch_size: int,
    seed: int,
    *,
    progress: bool = True,
) -> Params:
    """``steps`` steps of ``tx`` on the old task's training split from ``init_params(seed)``."""
    x, y = jnp.asarray(data.old.train.x), jnp.asarray(data.old.train.y)
    params = init_params(model, seed)
    opt_state = tx.init(params)

    def step(carry, idx):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(mse, argnums=1)(model, params, x[idx], y[idx])
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    run = _scan_steps(step)
    idx = batch_indices(x.shape[0], batch_size, steps, seed=_stream(seed, 1))
    carry = (params, opt_state)
    chunk = max(1, steps // 20)
    with tqdm(total=steps, desc=f"pretrain seed {seed}", disable=not progress, leave=False) as bar:
        for s, e in _chunks(steps, chunk):
            carry, _ = run(carry, jnp.asarray(idx[s:e]))
            bar.update(e - s)
    return carry[0]


def evaluate(model: nn.Module, params: Params, old: Split, new: Split) -> dict[str, float]:
    """Old- and new-task MSE of ``params`` on the given splits."""
    return {
        "old": float(_mse_jit(model, params, jnp.asarray(old.x), jnp.asarray(old.y))),
        "new": float(_mse_jit(model, params, jnp.asarray(new.x), jnp.asarray(new.y))),
    }


_mse_jit = jax.jit(mse, static_argnums=0)


def _stream(seed: int, purpose: int) -> int:
    """Independent integer seed for one purpose (1: pretrain order, 2: fine-tune order)."""
    return int(np.random.SeedSequence([seed, purpose]).generate_state(1)[0])


@dataclasses.dataclass(frozen=True)
class FinetuneResult:
    """Outcome of fine-tuning one method from one pretrained model."""

    params: Params
    test: dict[str, float]  # final old/new test MSE (empty if not evaluated)
    val: dict[str, float]  # final old/new validation MSE
    curve: list[dict[str, float]]  # {"step", "val_old", "val_new"}
    wall_time: float  # seconds, including compilation


def finetune(
    method: MethodLike,
    model: nn.Module,
    params: Params,
    data: ToyData,
    order: np.ndarray,
    eval_every: int,
    *,
    progress: bool = True,
    evaluate_test: bool = True,
) -> FinetuneResult:
    """Fine-tunes ``params`` on the new task with ``method``, one batch per update call.

    ``order`` (``[steps, batch]``) fixes the batches; ``steps`` must be a multiple of
    ``method.period`` so that the run ends on a complete cycle. Gradients are taken at
    ``method.grad_params(stored)``; errors are measured at ``method.eval_params(...)``.
    """
    steps = order.shape[0]
    if steps % method.period:
        raise ValueError(f"{steps} steps is not a multiple of {method.name}.period={method.period}")
    x, y = jnp.asarray(data.new.train.x), jnp.asarray(data.new.train.y)
    start = time.perf_counter()
    stored = method.init_params(params)
    opt_state = method.tx.init(stored)

    def step(carry, idx):
        stored, opt_state = carry
        loss, grads = jax.value_and_grad(mse, argnums=1)(
            model, method.grad_params(stored), x[idx], y[idx]
        )
        updates, opt_state = method.tx.update(grads, opt_state, stored)
        return (method.apply(stored, updates), opt_state), loss

    @jax.jit
    def run(carry, idx):
        carry, _ = jax.lax.scan(step, carry, idx)
        return carry, method.eval_params(*carry)

    def val_point(step: int, p: Params) -> dict[str, float]:
        errors = evaluate(model, p, data.old.val, data.new.val)
        return {"step": step, **{f"val_{k}": v for k, v in errors.items()}}

    curve = [val_point(0, params)]
    carry = (stored, opt_state)
    final = params
    with tqdm(total=steps, desc=f"  {method.name}", disable=not progress, leave=False) as bar:
        for s, e in _chunks(steps, eval_every):
            carry, final = run(carry, jnp.asarray(order[s:e]))
            bar.update(e - s)
            if e % method.period == 0:
                curve.append(val_point(e, final))
    final = jax.block_until_ready(final)
    wall = time.perf_counter() - start
    return FinetuneResult(
        params=final,
        test=evaluate(model, final, data.old.test, data.new.test) if evaluate_test else {},
        val=evaluate(model, final, data.old.val, data.new.val),
        curve=curve,
        wall_time=wall,
    )
