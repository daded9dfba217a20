"""Switching from one optimizer to another after a number of update calls.

PROFIT assumes that fine-tuning data is *proximal* to the pretraining data. For
non-proximal tasks the paper warms up with AdamW (10 epochs on VTAB-1K) and
then switches to PROFIT. :func:`warmup_then` expresses that as one Optax
gradient transformation with a fixed state structure, so the switch happens
inside ``jax.jit`` with a single trace.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from profit_optax._src.checks import check_transformation

__all__ = ["WarmupThenState", "warmup_then"]


class WarmupThenState(NamedTuple):
    """State of :func:`warmup_then`.

    Attributes:
      count: number of update calls so far, an ``int32`` saturating at
        ``warmup_steps + 1`` (calls ``0 .. warmup_steps - 1`` are warm-up calls).
      warmup_state: state of the warm-up optimizer; frozen after the switch.
      opt_state: state of the second optimizer. Until the first call after the
        warm-up it is the state ``optimizer.init`` gave for the initial params
        (a placeholder that fixes the structure); that call replaces it with
        ``optimizer.init`` of the params reached.
    """

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as in optax's states
    warmup_state: optax.OptState
    opt_state: optax.OptState


def warmup_then(
    warmup_optimizer: optax.GradientTransformation,
    optimizer: optax.GradientTransformation,
    warmup_steps: int,
) -> optax.GradientTransformationExtraArgs:
    """Runs ``warmup_optimizer`` for ``warmup_steps`` update calls, then ``optimizer``.

    The transformation counterpart of ``optax.join_schedules`` with a single
    boundary: calls ``0 .. warmup_steps - 1`` are exactly calls of
    ``warmup_optimizer``; from call ``warmup_steps`` on they are exactly calls
    of ``optimizer``, which starts from the parameters the warm-up reached with
    a *fresh* state: ``optimizer.init(params)`` of those parameters, evaluated
    at the switch. Moments, counters and schedules of the second optimizer
    therefore start from zero (schedules count from the switch, not from the
    start of training), and a state that records parameters (PROFIT's θ_ref,
    L2-SP's or FTP's anchor) records the warmed-up ones. Nothing carries over
    from the warm-up optimizer's state, which stays frozen after the switch.

    The switch happens inside ``jax.jit``: both states are held all the time
    (fixed structure, one trace) and each call runs only one optimizer
    (``jax.lax.cond``). The warm-up state is not an operand of the second
    optimizer's branches and vice versa, so under buffer donation the state
    that a call does not touch is not copied.

    The paper's recipe for non-proximal data (VTAB-1K): warm up with AdamW,
    then switch to PROFIT.

    Examples:
      >>> import jax.numpy as jnp, optax, profit_optax
      >>> from profit_optax import warmup_then
      >>> tx = warmup_then(
      ...     optax.adamw(1e-3), profit_optax.profit(optax.adam(1e-3), optax.sgd(1e-5)), 2
      ... )
      >>> params = {"w": jnp.ones(3)}
      >>> state = tx.init(params)
      >>> for _ in range(4):
      ...     updates, state = tx.update({"w": jnp.ones(3)}, state, params)
      ...     params = optax.apply_updates(params, updates)
      >>> int(state.count), int(state.warmup_state[0].count), int(state.opt_state.count)
      (3, 2, 0)

    Args:
      warmup_optimizer: the optimizer of the first ``warmup_steps`` calls, e.g.
        ``optax.adamw(1e-4)``.
      optimizer: the optimizer of every later call, e.g. ``profit(...)``.
      warmup_steps: number of warm-up update calls, an ``int >= 0`` (0 runs
        ``optimizer`` only, with its state initialised at the first call).
        With ``optax.MultiSteps`` outside, count its inner calls.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose state is a
      :class:`WarmupThenState`. Extra keyword arguments of ``update`` (e.g.
      ``grad_fn`` for PROFIT's one-call mode) go to both optimizers; an
      optimizer that takes none ignores them.

    Raises:
      TypeError: if an optimizer is not a gradient transformation.
      ValueError: if ``warmup_steps`` is not a non-negative integer.
    """
    check_transformation(warmup_optimizer, "warmup_optimizer", "warmup_then")
    check_transformation(optimizer, "optimizer", "warmup_then")
    if (
        isinstance(warmup_steps, bool)
        or not isinstance(warmup_steps, int | jnp.integer)
        or warmup_steps < 0
    ):
        raise ValueError(
            f"warmup_then: `warmup_steps` must be an integer >= 0, got {warmup_steps!r}."
        )
    warmup_steps = int(warmup_steps)
    first = optax.with_extra_args_support(warmup_optimizer)
    second = optax.with_extra_args_support(optimizer)

    def init_fn(params: optax.Params) -> WarmupThenState:
        return WarmupThenState(
            count=jnp.zeros((), jnp.int32),
            warmup_state=first.init(params),
            opt_state=second.init(params),
        )

    def update_fn(
        updates: optax.Updates,
        state: WarmupThenState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, WarmupThenState]:
        grads = updates
        count = state.count
        in_warmup = count < warmup_steps

        # Two conditionals, each owning one state: the other state is never an operand.
        # In each, the branch that does not run the optimizer passes its state through
        # and is the *false* branch (branch 0): with the pass-through as branch 1, XLA
        # inserts a copy of every passed-through state buffer, every call, under
        # donation (measured on the compiled HLO; see docs/real_runs.md).
        def warm(ops):
            g, s = ops
            return first.update(g, s, params, **extra_args)

        def idle(ops):
            g, s = ops
            return optax.tree.zeros_like(g), s

        def run(ops):
            g, s = ops
            # A fresh state at the switch; the identity is again the false branch.
            s = jax.lax.cond(count == warmup_steps, lambda s: second.init(params), lambda s: s, s)
            return second.update(g, s, params, **extra_args)

        u_warm, warmup_state = jax.lax.cond(in_warmup, warm, idle, (grads, state.warmup_state))
        u_main, opt_state = jax.lax.cond(~in_warmup, run, idle, (grads, state.opt_state))

        out = jax.tree.map(lambda a, b: jnp.where(in_warmup, a, b), u_warm, u_main)
        new_count = jnp.minimum(count + 1, warmup_steps + 1).astype(jnp.int32)
        return out, WarmupThenState(new_count, warmup_state, opt_state)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
