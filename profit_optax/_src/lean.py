"""Memory-lean PROFIT: the reference displacement recomputed from the momentum buffer.

PROFIT's alternating mode keeps θ_ref, one parameter-sized buffer, beyond the two
optimizers' states (about +25% training memory with Adam, Chakravarthy et al.,
NeurIPS 2025, §5). The paper suggests that it "can be largely eliminated by
approximating via the momentum buffer" and leaves the memory-efficient version
as future work. :func:`profit_lean` is one such approximation: it keeps *no*
parameter-sized buffer beyond the main optimizer's own state. Its state readers
(``ref_params``, ``diagnostics``) are PROFIT's, in :mod:`profit_optax._src.readers`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from profit_optax._src.checks import check_projection, check_transformation, check_trees
from profit_optax._src.numerics import (
    ProfitDiagnostics,
    acc_dtype,
    project,
    projection_sums,
    sumsq,
    to_acc,
    zero_diagnostics,
)

__all__ = [
    "DEFAULT_LEAN_REF_SCALE",
    "ProfitLeanState",
    "displacement",
    "find_first_moment",
    "moment_fn",
    "profit_lean",
]

# Fields that hold a first-moment (momentum) buffer in Optax's states: `mu` of
# ScaleByAdamState, ScaleByAmsgradState, ScaleByLionState, ScaleByBeliefState,
# ScaleByNovogradState, ScaleByRStdDevState; `trace` of TraceState (sgd momentum).
_MOMENT_FIELDS = ("mu", "trace")

FirstMomentFn = Callable[[optax.OptState], optax.Updates]

#: :func:`profit_lean`'s default ``ref_scale`` (see its docstring for why it differs from
#: :data:`~profit_optax.DEFAULT_REF_SCALE`).
DEFAULT_LEAN_REF_SCALE = 0.01


class ProfitLeanState(NamedTuple):
    """State of :func:`profit_lean`.

    Attributes:
      scale: s, the length of the displacement Δ = −s·m/‖m‖ at which the
        current parameters sit (``float32``; 0 before the first step). Together
        with the main optimizer's first moment m it determines Δ, so that
        θ_ref = params − Δ is recovered without storing it.
      main_state: state of the main optimizer (advances on every call).
      diagnostics: :class:`~profit_optax.ProfitDiagnostics` of the last step;
        ``delta_norm`` is the length of the displacement used by that step.
    """

    scale: jax.Array
    main_state: optax.OptState
    diagnostics: ProfitDiagnostics


def _is_moment_node(x: Any) -> bool:
    return hasattr(x, "_fields") and any(f in x._fields for f in _MOMENT_FIELDS)


def find_first_moment(opt_state: optax.OptState, params: optax.Params) -> optax.Updates:
    """Returns the unique first-moment buffer (shaped like ``params``) in ``opt_state``.

    Looks for NamedTuple states with a ``mu`` field (Adam, AdamW, AMSGrad, Lion,
    AdaBelief, NovoGrad, centred RMSProp, ...) or a ``trace`` field (SGD with
    momentum, ``optax.trace``), also nested in chains, ``inject_hyperparams``
    and other wrappers, and keeps those with the tree structure and shapes of
    ``params``.

    Args:
      opt_state: the main optimizer's state.
      params: the parameters (or any tree with their structure and shapes).

    Returns:
      The first-moment tree.

    Raises:
      ValueError: if there is no such buffer or more than one.
    """
    p_def = jax.tree.structure(params)
    p_shapes = [jnp.shape(p) for p in jax.tree.leaves(params)]
    candidates = []
    nodes = jax.tree_util.tree_flatten_with_path(opt_state, is_leaf=_is_moment_node)[0]
    for path, node in nodes:
        if not _is_moment_node(node):
            continue
        for field in _MOMENT_FIELDS:
            value = getattr(node, field, None)
            if value is None or jax.tree.structure(value) != p_def:  # type: ignore[operator]  # no stub for jaxlib's PyTreeDef
                continue
            if [jnp.shape(v) for v in jax.tree.leaves(value)] != p_shapes:
                continue
            where = f"{jax.tree_util.keystr(path)}.{field} ({type(node).__name__})"
            candidates.append((where, value))
    if len(candidates) == 1:
        return candidates[0][1]
    if not candidates:
        raise ValueError(
            "profit_lean: the main optimizer keeps no first-moment buffer shaped like the "
            f"params (a `{'` or `'.join(_MOMENT_FIELDS)}` field in its state), so Δ cannot be "
            "recovered from it. Use a main optimizer with momentum (optax.adam, optax.adamw, "
            "optax.sgd(lr, momentum=0.9), ...), pass `first_moment=` to say where the buffer "
            "is, or use profit_optax.profit (which stores θ_ref)."
        )
    raise ValueError(
        "profit_lean: the main optimizer's state holds several first-moment buffers shaped "
        f"like the params: {', '.join(w for w, _ in candidates)}. Pass `first_moment=` "
        "(a function of the main optimizer's state) to choose one."
    )


def moment_fn(first_moment: FirstMomentFn | None) -> Callable[[Any, Any], Any]:
    """``(main_state, params) -> m``: :func:`find_first_moment`, or ``first_moment``
    with its result checked against the params' structure."""
    if first_moment is None:
        return find_first_moment

    def get(state, params):
        m = first_moment(state)
        if jax.tree.structure(m) != jax.tree.structure(params):  # type: ignore[operator]  # no stub for jaxlib's PyTreeDef
            raise ValueError(
                "profit_lean: `first_moment(main_state)` must return a tree like the params.\n"
                f"  returned: {jax.tree.structure(m)}\n  params:   {jax.tree.structure(params)}"
            )
        return m

    return get


def displacement(moment: optax.Updates, scale: jax.Array) -> optax.Updates:
    """Δ = −s·m/‖m‖ in the accumulation dtype; 0 where m = 0 or s = 0."""
    return _scaled(moment, _factor(scale, sumsq(moment)))


def _factor(scale: jax.Array, mm: jax.Array) -> jax.Array:
    """−s/‖m‖ from s and ‖m‖² (0 where m = 0): Δ = factor·m."""
    return jnp.where(mm > 0, -scale / jnp.sqrt(jnp.where(mm > 0, mm, 1.0)), 0.0)


def _scaled(moment: optax.Updates, factor: jax.Array) -> optax.Updates:
    """factor·m in the accumulation dtype."""
    return jax.tree.map(lambda m: factor.astype(acc_dtype(m.dtype)) * to_acc(m), moment)


def profit_lean(
    optimizer: optax.GradientTransformation,
    *,
    ref_scale: float = DEFAULT_LEAN_REF_SCALE,
    projection: Literal["global", "per_tensor"] = "global",
    first_moment: FirstMomentFn | None = None,
) -> optax.GradientTransformationExtraArgs:
    r"""Memory-lean PROFIT: Δ from the main optimizer's momentum, no θ_ref buffer.

    An approximation of :func:`~profit_optax.profit` whose state holds no
    parameter-sized buffer beyond the main optimizer's own state. The
    reference displacement is not produced by reference steps on separate
    batches but read off the main optimizer's first moment m (Adam's ``mu``,
    SGD-momentum's ``trace``):

    .. math::

      Δ(m, s) = -s \, m / \lVert m \rVert, \qquad
      s = \text{ref\_scale} \cdot \lVert u_\text{last} \rVert,

    where :math:`u_\text{last}` is the main optimizer's last update. Between
    calls the parameters you hold are the probe point θ' = θ_ref + Δ(m, s); the
    state's m and s recover θ_ref = θ' − Δ(m, s). Each call, with the gradient
    g taken at θ':

    1. θ_ref ← θ' − Δ(m, s);
    2. if ⟨g, Δ⟩ < 0 (that is ⟨g, m⟩ > 0): g ← g − (⟨g, Δ⟩ / ‖Δ‖²) Δ;
    3. u, m' ← main optimizer step with g at θ_ref; s' ← ref_scale · ‖u‖;
    4. return the update that moves the parameters to θ_ref + u + Δ(m', s').

    How it differs from Algorithm 1 (and from :func:`~profit_optax.profit`):

    * **Period 1.** One gradient per main step: every call is a main step,
      there are no reference calls. Per gradient evaluation it therefore takes
      ``n_ref + 1`` times as many main steps as the exact mode.
    * **Δ's direction** is −m, the main optimizer's running average of the
      (projected) gradients of *previous* batches, instead of the reference
      optimizer's displacement on a fresh batch at θ_ref. The conflict test
      becomes ⟨g, m⟩ > 0. Δ's length (which the projection ignores) only sets
      where g is evaluated; it is scale-free: a fraction ``ref_scale`` of the
      last main step, like the exact mode's automatic reference step.
    * **θ_ref is recomputed, not stored.** The parameters are stored rounded,
      so θ' − Δ differs from the θ_ref that was aimed at by one rounding of the
      parameters per step (like plain training, where every step rounds θ);
      the error does not compound beyond that. In ``bfloat16`` a displacement
      below the parameters' resolution is partly absorbed by rounding: the
      gradient is then taken nearer θ_ref than intended and the recovered
      θ_ref is off by at most ‖Δ‖ (which is ``ref_scale`` times a step); the
      projection direction itself comes from m and is not affected.
    * The held parameters are **never** the model itself once m ≠ 0 (the
      exact mode's are, after each main call). Evaluate, log and checkpoint
      :func:`~profit_optax.ref_params` (or checkpoint the raw params together with the
      optimizer state: θ_ref is a function of both).

    Must be the last transformation of a chain, like :func:`~profit_optax.profit`.
    A non-finite gradient skips the call (zero update, state unchanged but for
    ``diagnostics.nonfinite_count``).

    Why a transformation of its own rather than an option of ``profit``: it is a
    different algorithm with a different contract. It takes no reference optimizer,
    no ``n_ref``, no one-call mode and no ``reset_reference_state`` (every one of
    ``profit``'s own arguments would be invalid with it), it needs a main
    optimizer with momentum, its state (:class:`ProfitLeanState`) holds no θ_ref,
    and its held parameters are never the model. The state readers
    :func:`~profit_optax.ref_params` and :func:`~profit_optax.diagnostics` accept
    both states.

    Why ``ref_scale`` defaults to 0.01 here and to
    :data:`~profit_optax.DEFAULT_REF_SCALE` (3e-4) in ``profit``: the two scales
    do different jobs. In ``profit`` it sets the automatic reference step, which
    produces Δ; 3e-4 was chosen by the λ_ref sweeps of that step
    (``docs/lambda_ref.md``), which never ran this mode. Here Δ's direction comes
    from the momentum and ``ref_scale`` only sets how far from θ_ref the gradient
    is evaluated; the accuracy of this mode was measured at 0.01
    (``docs/real_runs.md``), and a 30× smaller probe would more often fall below
    a bfloat16 parameter's resolution and be absorbed by rounding.

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np, optax
      >>> from profit_optax import profit_lean, ref_params
      >>> tx = profit_lean(optax.adam(0.1), ref_scale=0.1)
      >>> params = {"w": jnp.array([1.0, -1.0])}
      >>> state = tx.init(params)
      >>> loss = lambda p, x: jnp.sum((p["w"] - x) ** 2)
      >>> for x in (0.0, 0.5, -0.5, 1.0):
      ...     grads = jax.grad(loss)(params, jnp.array([x, 0.0]))
      ...     updates, state = tx.update(grads, state, params)
      ...     params = optax.apply_updates(params, updates)
      >>> np.asarray(params["w"]).round(3)  # the probe point θ' = θ_ref + Δ
      array([ 0.749, -0.716], dtype=float32)
      >>> np.asarray(ref_params(params, state)["w"]).round(3)  # the model θ_ref
      array([ 0.753, -0.721], dtype=float32)

    Args:
      optimizer: the main optimizer; its state must hold exactly one first-moment
        buffer shaped like the params (a ``mu`` or ``trace`` field, also inside
        chains and wrappers), or pass ``first_moment``.
      ref_scale: ‖Δ‖ relative to the main optimizer's last step (positive;
        default 0.01, see above).
      projection: ``"global"`` (one inner product over all parameters, as in the
        paper) or ``"per_tensor"``.
      first_moment: optional function ``main_state -> tree like params`` that
        returns the buffer to use as m (for optimizers whose momentum is not a
        ``mu`` / ``trace`` field). Pass the same function to
        :func:`~profit_optax.ref_params`.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose state is a
      :class:`ProfitLeanState`. Extra keyword arguments of ``update`` are passed
      on to the main optimizer.

    Raises:
      TypeError: if ``optimizer`` is not a gradient transformation.
      ValueError: for a non-positive ``ref_scale`` or unknown ``projection``; at
        ``init`` if the main optimizer has no (or more than one) first-moment
        buffer; at ``update`` for ``params=None`` or mismatched trees.
    """
    check_transformation(optimizer, "optimizer", "profit_lean")
    if isinstance(ref_scale, bool) or not (isinstance(ref_scale, int | float) and ref_scale > 0):
        raise ValueError(f"profit_lean: `ref_scale` must be a positive number, got {ref_scale!r}.")
    check_projection(projection, "profit_lean")
    optimizer = optax.with_extra_args_support(optimizer)
    get_moment = moment_fn(first_moment)

    def init_fn(params: optax.Params) -> ProfitLeanState:
        main_state = optimizer.init(params)
        get_moment(main_state, params)  # fail early without a momentum buffer
        return ProfitLeanState(
            scale=jnp.zeros((), jnp.float32),
            main_state=main_state,
            diagnostics=zero_diagnostics(),
        )

    # What a call computes, and what the compiled donated program does with it (fp32,
    # Adam; benchmarks.update_cost.phase_analysis, 18R 5W = 92 bytes/param, was 24R 8W):
    #   1. the sums ⟨g, m⟩, ‖m‖², ‖g‖² of the buffers g and m (4R): no scalar enters
    #      them (Δ = factor·m is scaled afterwards, in scalars). XLA:CPU emits each sum as
    #      a reduction of its own, and a scalar broadcast that several same-shaped
    #      leaves' reductions share is written out to a parameter-sized buffer;
    #   2. one all-or-nothing conditional (a non-finite g skips it) that runs the main
    #      step: the main state is written in place by the working branch and passed
    #      through by the other (no copies), and u is its only other output (1 temp: u
    #      has two consumers, ‖u‖² and the update, and a reduction cannot share a loop);
    #   3. ‖u‖², ‖m'‖² (2R) and one loop that writes the update (p, u, m', m: 4R1W).
    #      It needs the old m next to m', which the main step overwrote in place, so XLA
    #      keeps a copy of m (1R1W). Neither temporary can go under optax's contract:
    #      u exists only as the main optimizer's output, and m' only as its state.
    def update_fn(
        updates: optax.Updates,
        state: ProfitLeanState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, ProfitLeanState]:
        check_trees(updates, params, "profit_lean")
        grads = updates
        # Per leaf (⟨g, m⟩, ‖m‖², ‖g‖²) of the buffers themselves: Δ = factor·m is
        # never formed, and the sums take no scalar operand (see above).
        raw = projection_sums(grads, get_moment(state.main_state, params))
        factor = _factor(state.scale, jnp.sum(raw[:, 1]))
        sums = raw * jnp.stack([factor, jnp.square(factor), jnp.ones_like(factor)])
        finite = jnp.isfinite(jnp.sum(raw[:, 2]))

        def step(main_state):
            delta = _scaled(get_moment(main_state, params), factor)
            g_proj, diag = project(grads, delta, projection, sums)
            theta_ref = jax.tree.map(lambda p, d: (to_acc(p) - d).astype(p.dtype), params, delta)
            u, main_state = optimizer.update(g_proj, main_state, theta_ref, **extra_args)
            return main_state, u, diag

        def skip(main_state):
            return main_state, optax.tree.zeros_like(params), zero_diagnostics()

        old_delta = _scaled(get_moment(state.main_state, params), factor)
        main_state, u, diag = jax.lax.cond(finite, step, skip, state.main_state)
        new_scale = (ref_scale * jnp.sqrt(sumsq(u))).astype(jnp.float32)
        new_moment = get_moment(main_state, params)
        new_factor = _factor(new_scale, sumsq(new_moment))

        def out(p, ui, mn, d):
            # One rounding: land on round(θ' + u + Δ' − Δ), then express it relative to θ'.
            acc = acc_dtype(p.dtype)
            dn = new_factor.astype(acc) * to_acc(mn)
            target = (p.astype(acc) + (to_acc(ui) + dn - d)).astype(p.dtype)
            upd = (target.astype(acc) - p.astype(acc)).astype(p.dtype)
            return jnp.where(finite, upd, jnp.zeros_like(p))

        out_updates = jax.tree.map(out, params, u, new_moment, old_delta)
        count = state.diagnostics.nonfinite_count
        diag = optax.tree.where(
            finite,
            diag._replace(nonfinite_count=count),
            state.diagnostics._replace(nonfinite_count=count + 1),
        )
        return out_updates, ProfitLeanState(
            scale=jnp.where(finite, new_scale, state.scale),
            main_state=main_state,
            diagnostics=diag,
        )

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
