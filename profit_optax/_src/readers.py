"""Reading PROFIT's state: the model θ_ref (:func:`ref_params`) and the diagnostics.

The two public readers accept the state of :func:`~profit_optax.profit` and of
:func:`~profit_optax.profit_lean`, bare or inside any optimizer state that
contains exactly one (``optax.chain``, ``optax.inject_hyperparams``,
``optax.MultiSteps``, ``flax.nnx.Optimizer``, ...). :func:`find_state` finds
that state (used by the tests).
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

__all__ = ["at_probe_point", "diagnostics", "find_state", "ref_params"]


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


def find_state(opt_state: Any, kind: type) -> Any:
    """The unique node of type ``kind`` (:class:`~profit_optax.ProfitState` or
    :class:`~profit_optax.ProfitLeanState`) inside ``opt_state``: the state itself or the
    state of a transformation containing it (``optax.chain``, ``optax.MultiSteps``, ...).

    Raises:
      ValueError: if there is none or more than one.
    """
    is_kind = lambda x: isinstance(x, kind)
    found = [x for x in jax.tree.leaves(opt_state, is_leaf=is_kind) if is_kind(x)]
    if len(found) != 1:
        raise ValueError(
            f"expected exactly one {kind.__name__} inside the optimizer state, found {len(found)}."
        )
    return found[0]


def _profit_state(opt_state: Any) -> ProfitState | ProfitLeanState:
    """The unique PROFIT state, exact or lean, inside ``opt_state`` (unwrapped)."""
    opt_state = _unwrap(opt_state)
    kind = ProfitLeanState if _contains(opt_state, ProfitLeanState) else ProfitState
    return find_state(opt_state, kind)


def ref_params(
    params: optax.Params, opt_state: Any, *, first_moment: FirstMomentFn | None = None
) -> optax.Params:
    """The fine-tuned model's parameters θ_ref, also in the middle of a cycle.

    The parameters held between calls are not always the model: after a
    reference call of :func:`~profit_optax.profit` they are the probe point θ',
    and with :func:`~profit_optax.profit_lean` they always are (once its momentum
    is non-zero). Evaluate, log and export ``ref_params(params, opt_state)``:

    * :func:`~profit_optax.profit`: after a main call (``count == 0``) and in
      one-call mode, ``params`` themselves; after a reference call, the stored
      θ_ref (exactly the parameters the cycle started from).
    * :func:`~profit_optax.profit_lean`: θ_ref = params − Δ(m, s), recovered
      from the main optimizer's first moment m and the state's scale s (in the
      parameters' dtypes).

    ``params`` are always needed: at the start of a cycle the exact mode's θ_ref
    *is* the held parameters (its buffer is stale then), and the lean mode keeps
    no θ_ref at all. Jittable.

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
      params: the current parameters (the ones passed to ``update``).
      opt_state: the state of :func:`~profit_optax.profit` or
        :func:`~profit_optax.profit_lean`, or an optimizer state containing
        exactly one (``optax.chain``, ``optax.MultiSteps``,
        ``flax.nnx.Optimizer``, ...).
      first_moment: with a :func:`~profit_optax.profit_lean` state, the same
        ``first_moment`` function passed to it, if any.

    Returns:
      A tree like ``params``.

    Raises:
      ValueError: if ``opt_state`` holds no PROFIT state or more than one, or for
        ``first_moment`` with an exact PROFIT state.
    """
    params = _unwrap(params)
    state = _profit_state(opt_state)
    if isinstance(state, ProfitLeanState):
        delta = displacement(moment_fn(first_moment)(state.main_state, params), state.scale)
        return jax.tree.map(lambda p, d: (to_acc(p) - d).astype(p.dtype), params, delta)
    if first_moment is not None:
        raise ValueError(
            "ref_params: `first_moment` applies to profit_lean states only; this is a "
            "profit (exact) state, which stores θ_ref."
        )
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
        the probe point on every call; the model is :func:`ref_params`), or
        without exactly one PROFIT state.
    """
    opt_state = _unwrap(opt_state)
    if _contains(opt_state, ProfitLeanState):
        raise ValueError(
            "at_probe_point: profit_lean holds the probe point θ′ on every call (no forward "
            "pass runs at the model θ_ref = ref_params(params, opt_state))."
        )
    state = find_state(opt_state, ProfitState)
    if state.theta_ref is None:  # one-call mode: the probes stay inside the call
        return jnp.zeros((), bool)
    return state.count > 0


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
    return _profit_state(opt_state).diagnostics._asdict()
