"""Batch-norm statistics under PROFIT in a Flax NNX training loop (optional; needs flax).

A forward pass in training mode moves a model's running statistics (the
``nnx.BatchStat`` variables of ``nnx.BatchNorm``). In PROFIT's alternating mode
some calls take their gradient at a probe point θ′ (the main call, and with
``n_ref > 1`` the later reference calls; :func:`profit_optax.at_probe_point`), so
by default the statistics the fine-tuned model is evaluated with were partly
collected at parameters that are not the model. Measured on a batch-normalized
ResNet (two tasks, 3 seeds), that made no difference to the fine-tuned model's
accuracy, so the plain loop needs nothing from this module (the user guide's
batch-normalization section). Two ways to keep the statistics to the model where a
loop needs them to come from the model alone:

* alternating mode: :func:`only_at_model` around the gradient computation
  restores the statistics after a forward pass at a probe point::

      @nnx.jit
      def train_step(model, optimizer, batch):
          with profit_optax.batch_stats.only_at_model(model, optimizer):
              grads = nnx.grad(loss_fn)(model, batch)
          optimizer.update(model, grads)

* one-call mode (``profit(..., one_call=True)``): :func:`probe_grad_fn` builds
  the ``grad_fn`` that takes the probe gradients on a copy of the model, whose
  statistics updates are dropped::

      @nnx.jit
      def train_step(model, optimizer, batches):  # n_ref + 1 batches, stacked
          grads = nnx.grad(loss_fn)(model, batches[0])  # at the model: moves the statistics
          grad = lambda probe, i: nnx.grad(loss_fn)(probe, batches[i + 1])  # stacked batches
          grad_fn = profit_optax.batch_stats.probe_grad_fn(model, grad)
          optimizer.update(model, grads, grad_fn=grad_fn)

  With a training-mode model the probe gradients normalize with their batch's
  statistics, and the run is the alternating run with :func:`only_at_model`
  (same gradients, same statistics); pass ``nnx.view(model,
  use_running_average=True)`` to take them with the running statistics instead
  (measured on a ResNet, that run was worse than the plain loop: 24.5 points on a
  class split, 1.9 on a rotation shift; the user guide's batch-normalization section).

``i`` is a Python ``int`` (PROFIT unrolls the reference steps at trace time), so
arrays and Python lists of batches both index with it. This module imports ``flax``;
``import profit_optax`` does not load it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from profit_optax._src.readers import at_probe_point

__all__ = ["only_at_model", "probe_grad_fn", "restore_if"]


@contextlib.contextmanager
def restore_if(model: nnx.Module, condition: Any, kind: Any = nnx.BatchStat) -> Iterator[None]:
    """Restores ``model``'s ``kind`` variables on exit from the block when ``condition`` holds.

    ``condition`` is a boolean scalar (traced under ``nnx.jit`` too): where it is
    true the variables are bit-exactly what they were on entry, otherwise what the
    block left. Works eagerly and under ``nnx.jit``.

    Args:
      model: an ``nnx.Module`` (or any graph node).
      condition: a boolean scalar.
      kind: the ``nnx`` filter of the variables to restore (default ``nnx.BatchStat``).
    """
    before = nnx.clone(nnx.state(model, kind))  # new Variables holding the entry arrays
    yield
    after = nnx.state(model, kind)
    keep = jnp.asarray(condition, bool)
    nnx.update(model, jax.tree.map(lambda b, a: jnp.where(keep, b, a), before, after))


def only_at_model(model: nnx.Module, opt_state: Any, kind: Any = nnx.BatchStat) -> Any:
    """Keeps the ``kind`` variables (batch-norm statistics) to forward passes at the model.

    A context manager: around the gradient computation of an alternating-mode
    PROFIT call, it restores the statistics when the call's forward pass ran at
    a probe point θ′ (:func:`profit_optax.at_probe_point`, read on entry, before
    ``optimizer.update``). The statistics then move once per cycle, on the first
    call, whose gradient is taken at the model θ_ref.

    Args:
      model: the ``nnx.Module`` being trained.
      opt_state: an ``nnx.Optimizer`` (its ``opt_state`` is read) or an optimizer
        state containing exactly one PROFIT state.
      kind: the ``nnx`` filter of the variables to keep (default ``nnx.BatchStat``).

    Raises:
      ValueError: for a ``profit_lean`` state or without exactly one PROFIT state.
    """
    state = opt_state.opt_state if isinstance(opt_state, nnx.Optimizer) else opt_state
    return restore_if(model, at_probe_point(state), kind)


def probe_grad_fn(
    model: nnx.Module,
    grad: Callable[[nnx.Module, int], Any],
    wrt: Any = nnx.Param,
) -> Callable[[Any, int], Any]:
    """The ``grad_fn`` of one-call mode for an ``nnx`` model, leaving the model untouched.

    ``grad_fn(params, i)`` (``params``: the plain arrays that ``nnx.Optimizer``
    passes to ``tx.update``) rebuilds a copy of ``model`` at ``params`` with the
    model's other variables (its running statistics) and returns
    ``grad(copy, i)`` filtered by ``wrt``, as plain arrays. Whatever the forward
    pass changes on the copy (statistics, RNG counts) is dropped.

    Args:
      model: the model, in the mode the probe gradients are to be taken in.
      grad: ``grad(probe_model, i)``: the gradient after the ``i``-th reference step,
        e.g. ``lambda m, i: nnx.grad(loss_fn)(m, batches[i + 1])``.
      wrt: the filter of the optimized variables (``nnx.Optimizer``'s ``wrt``).
    """
    graphdef, _params, others = nnx.split(model, wrt, ...)  # type: ignore[misc]
    rest = nnx.as_pure(others)  # arrays, not Variables: grad_fn runs inside PROFIT's loop

    def grad_fn(params: Any, i: int) -> Any:
        probe = nnx.merge(graphdef, params, rest)
        return nnx.as_pure(nnx.state(grad(probe, i), wrt))

    return grad_fn
