"""Reading PROFIT's state: the model θ_ref, the diagnostics, the state inside a chain.

The readers accept the state of :func:`~profit_optax.profit` and of
:func:`~profit_optax.profit_lean`, bare or inside any optimizer state that
contains exactly one (``optax.chain``, ``optax.inject_hyperparams``,
``optax.MultiSteps``, ``flax.nnx.Optimizer``, ...).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from profit_optax._src.lean import FirstMomentFn, ProfitLeanState, displacement, moment_fn
from profit_optax._src.numerics import to_acc
from profit_optax._src.profit import ProfitState

__all__ = [
    "at_probe_point",
    "diagnostics",
    "find_profit_lean_state",
    "find_profit_state",
    "lean_ref_params",
    "ref_params",
]


def _unwrap(tree: Any) -> Any:
    """Plain arrays for trees holding wrapped leaves (``flax.nnx`` Variables such as the
    ``OptArray``/``Param`` leaves of ``nnx.Optimizer`` states), as ``nnx.as_pure`` does."""

    def is_wrapped(x: Any) -> bool:  # looks at the type: reading `.value` warns on nnx
        kind = type(x)
        plain = isinstance(x, jax.Array | np.ndarray)
        return not plain and (hasattr(kind, "get_value") or hasattr(kind, "value"))

    value = lambda x: x.get_value() if hasattr(type(x), "get_value") else x.value
    return jax.tree.map(lambda x: value(x) if is_wrapped(x) else x, tree, is_leaf=is_wrapped)


def _contains(opt_state: Any, kind: type) -> bool:
    leaves = jax.tree.leaves(opt_state, is_leaf=lambda x: isinstance(x, kind))
    return any(isinstance(x, kind) for x in leaves)


def _find_unique(opt_state: Any, kind: type) -> Any:
    """The unique node of type ``kind`` inside ``opt_state`` (ValueError otherwise)."""
    is_kind = lambda x: isinstance(x, kind)
    found = [x for x in jax.tree.leaves(opt_state, is_leaf=is_kind) if is_kind(x)]
    if len(found) != 1:
        raise ValueError(
            f"expected exactly one {kind.__name__} inside the optimizer state, found {len(found)}."
        )
    return found[0]


def find_profit_state(opt_state: Any) -> ProfitState:
    """Returns the unique :class:`~profit_optax.ProfitState` inside ``opt_state``.

    Works on a bare PROFIT state and on states of transformations that contain
    one (``optax.chain``, ``optax.inject_hyperparams``, ``optax.MultiSteps``,
    ``optax.apply_if_finite``, ...).

    Raises:
      ValueError: if there is no PROFIT state or more than one.
    """
    return _find_unique(opt_state, ProfitState)


def find_profit_lean_state(opt_state: Any) -> ProfitLeanState:
    """Returns the unique :class:`~profit_optax.ProfitLeanState` inside ``opt_state``.

    Raises:
      ValueError: if there is none or more than one.
    """
    return _find_unique(opt_state, ProfitLeanState)


def ref_params(params: optax.Params, opt_state: Any) -> optax.Params:
    """The fine-tuned model's parameters θ_ref, also in the middle of a cycle.

    After a main call (``count == 0``) these are ``params`` themselves; after a
    reference call they are the stored θ_ref (exactly the parameters the cycle
    started from). With a :func:`~profit_optax.profit_lean` state: θ_ref
    recovered from the momentum, as :func:`lean_ref_params` does. Use them for
    evaluation, logging and checkpoints.

    Examples:
      >>> import jax.numpy as jnp, optax, profit_optax
      >>> tx = profit_optax.profit(optax.sgd(0.1), optax.sgd(0.01))
      >>> params = {"w": jnp.ones(2)}
      >>> state = tx.init(params)
      >>> updates, state = tx.update({"w": jnp.ones(2)}, state, params)  # reference call
      >>> probe = optax.apply_updates(params, updates)
      >>> probe["w"], profit_optax.ref_params(probe, state)["w"]
      (Array([0.99, 0.99], dtype=float32), Array([1., 1.], dtype=float32))

    Args:
      params: the current parameters.
      opt_state: the PROFIT state (exact or lean), or an optimizer state
        containing exactly one.

    Returns:
      A tree like ``params``.
    """
    params, opt_state = _unwrap(params), _unwrap(opt_state)
    if _contains(opt_state, ProfitLeanState):
        return lean_ref_params(params, opt_state)
    state = find_profit_state(opt_state)
    if state.theta_ref is None:  # one-call mode: params are always θ_ref
        return params
    mid_cycle = state.count > 0
    return jax.tree.map(lambda p, r: jnp.where(mid_cycle, r, p), params, state.theta_ref)


def at_probe_point(opt_state: Any) -> jax.Array:
    """Whether the parameters held now are a probe point θ′ rather than the model θ_ref.

    In alternating mode the calls of a cycle take their gradients at different
    points: the first call (``count == 0``) at the model θ_ref itself, the others
    (the remaining ``n_ref - 1`` reference calls and the main call) at probe
    points θ′ that the reference steps reached. Read this *before* the forward
    pass of a call to know where it runs, e.g. to keep the batch-norm statistics
    that forward passes at probe points would move (``profit_optax.batch_stats``).
    In one-call mode the parameters held between calls are always the model
    (``False``). Jittable; a boolean device scalar.

    Examples:
      >>> import jax.numpy as jnp, optax, profit_optax
      >>> tx = profit_optax.profit(optax.sgd(0.1), optax.sgd(0.01))  # n_ref = 1
      >>> params, state, seen = {"w": jnp.ones(2)}, tx.init({"w": jnp.ones(2)}), []
      >>> for _ in range(3):  # reference call, main call, reference call
      ...     seen.append(bool(profit_optax.at_probe_point(state)))
      ...     updates, state = tx.update({"w": jnp.ones(2)}, state, params)
      ...     params = optax.apply_updates(params, updates)
      >>> seen
      [False, True, False]

    Args:
      opt_state: the state of :func:`~profit_optax.profit`, or an optimizer state
        containing exactly one (``optax.chain``, ``nnx.Optimizer``, ...).

    Returns:
      ``True`` when the next call's gradient is taken at a probe point.

    Raises:
      ValueError: for a :func:`~profit_optax.profit_lean` state (its parameters are
        the probe point on every call; the model is :func:`lean_ref_params`), or
        without exactly one PROFIT state.
    """
    opt_state = _unwrap(opt_state)
    if _contains(opt_state, ProfitLeanState):
        raise ValueError(
            "at_probe_point: profit_lean holds the probe point θ′ on every call (no forward "
            "pass runs at the model θ_ref = lean_ref_params(params, opt_state))."
        )
    state = find_profit_state(opt_state)
    if state.theta_ref is None:  # one-call mode: the probes stay inside the call
        return jnp.zeros((), bool)
    return state.count > 0


def lean_ref_params(
    params: optax.Params, opt_state: Any, *, first_moment: FirstMomentFn | None = None
) -> optax.Params:
    """The model θ_ref = params − Δ(m, s) of a :func:`~profit_optax.profit_lean` run.

    The counterpart of :func:`ref_params` for the lean mode (which
    :func:`ref_params` calls), with the ``first_moment`` argument: the parameters
    held between calls are the probe point θ'; evaluate, log and export these
    instead. Jittable; returns a tree like ``params`` (same dtypes).

    Args:
      params: the current parameters (the probe point).
      opt_state: the :class:`~profit_optax.ProfitLeanState`, or a state
        containing exactly one.
      first_moment: the same function passed to :func:`~profit_optax.profit_lean`,
        if any.

    Returns:
      A tree like ``params``.
    """
    state = find_profit_lean_state(opt_state)
    delta = displacement(moment_fn(first_moment)(state.main_state, params), state.scale)
    return jax.tree.map(lambda p, d: (to_acc(p) - d).astype(p.dtype), params, delta)


def diagnostics(opt_state: Any) -> dict[str, jax.Array]:
    """Scalar diagnostics of the last main PROFIT step, for logging.

    Returns device scalars (no host synchronisation; call ``jax.device_get`` on
    the result when you want Python numbers). Works under ``jax.jit``.

    Examples:
      >>> import jax.numpy as jnp, optax, profit_optax
      >>> tx = profit_optax.profit(optax.sgd(0.1), optax.sgd(0.01))
      >>> state = tx.init({"w": jnp.ones(2)})
      >>> sorted(profit_optax.diagnostics(state))  # doctest: +NORMALIZE_WHITESPACE
      ['conflict', 'cos_g_delta', 'delta_norm', 'grad_norm', 'nonfinite_count',
       'removed_norm']

    Args:
      opt_state: the PROFIT state (exact or lean), or an optimizer state
        containing exactly one.

    Returns:
      A dict with the fields of :class:`~profit_optax.ProfitDiagnostics`.
    """
    opt_state = _unwrap(opt_state)
    if _contains(opt_state, ProfitLeanState):
        return find_profit_lean_state(opt_state).diagnostics._asdict()
    return find_profit_state(opt_state).diagnostics._asdict()
