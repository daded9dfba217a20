"""Training steps for the ResNet under PROFIT: the three ways to treat batch-norm statistics.

In alternating mode a cycle's forward passes run partly at probe points θ′
(``profit_optax.at_probe_point``); a training-mode forward pass moves the
running statistics. The ways a user can run PROFIT on a batch-norm model:

* ``every_call``: the plain ``nnx`` loop; every call's forward pass moves the
  statistics, at the model and at the probe points (what PROFIT does by default);
* ``at_model``: alternating mode, statistics kept to the forward passes at the
  model (``profit_optax.batch_stats.only_at_model``): they move once per cycle;
* ``one_call``: ``profit(..., one_call=True)``; the first gradient, at the model,
  moves the statistics; the probe gradients are taken on a copy
  (``profit_optax.batch_stats.probe_grad_fn``) with the running statistics
  (``use_running_average=True``; the user guide describes it and, after the class
  split, advises against it). With
  ``probe_running_average=False`` they use their batch's statistics, and the run
  is ``at_model``'s (same gradients, same statistics; tested).

Every step is ``step(model, optimizer, batch) -> loss`` under ``nnx.jit``: one
call of the optimizer. For ``one_call`` (one whole cycle) ``batch`` holds
``n_ref + 1`` batches stacked along a leading axis (the probe gradients index it
with the traced reference-step number). ``every_call`` is also the step of a
plain optimizer (pretraining, the baselines).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
from flax import nnx

from profit_optax import batch_stats

#: loss_fn(model, batch) -> scalar loss (the model in training mode).
LossFn = Callable[[nnx.Module, Any], jax.Array]
MODES = ("every_call", "at_model", "one_call")


def make_step(mode: str, loss_fn: LossFn, *, probe_running_average: bool = True) -> Callable:
    """The jitted ``step(model, optimizer, batch) -> loss`` of ``mode`` (see the module)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")

    if mode == "every_call":

        @nnx.jit
        def step(model, optimizer, batch):
            loss, grads = nnx.value_and_grad(loss_fn)(model, batch)
            optimizer.update(model, grads)
            return loss

    elif mode == "at_model":

        @nnx.jit
        def step(model, optimizer, batch):
            with batch_stats.only_at_model(model, optimizer):
                loss, grads = nnx.value_and_grad(loss_fn)(model, batch)
            optimizer.update(model, grads)
            return loss

    else:

        @nnx.jit
        def step(model, optimizer, batches):
            pick = lambda i: jax.tree.map(lambda x: x[i], batches)
            loss, grads = nnx.value_and_grad(loss_fn)(model, pick(0))
            probe = nnx.view(model, use_running_average=True) if probe_running_average else model
            grad = lambda m, i: nnx.grad(loss_fn)(m, pick(i + 1))
            optimizer.update(model, grads, grad_fn=batch_stats.probe_grad_fn(probe, grad))
            return loss

    return step
