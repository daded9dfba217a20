"""PROFIT: PROximal FIne Tuning, as an Optax gradient transformation.

Implements Algorithm 1 of Chakravarthy et al., "PROFIT: A Specialized Optimizer
for Deep Fine Tuning", NeurIPS 2025 (https://arxiv.org/abs/2412.01930).

Each PROFIT cycle starts at the current parameters θ_ref, takes ``n_ref`` small
steps with a *reference* optimizer to reach θ', measures the displacement
Δ = θ' − θ_ref, takes a fresh gradient g at θ', removes from g its component
along Δ when the two conflict (⟨g, Δ⟩ < 0), and lets the *main* optimizer step
from θ_ref with the projected gradient. Near a converged point −Δ is a descent
direction of the old task's loss, so the main step does not undo what the
model already knows (to first order).

Two ways to drive it:

* **Alternating mode** (default): one gradient per ``update`` call, the training
  loop is the plain Optax loop. Calls cycle with period ``n_ref + 1``.
* **One-call mode** (``one_call=True``): a single ``update`` call performs the
  whole cycle, asking ``grad_fn(params, i)`` for the gradients it needs (like
  ``optax.contrib.sam``'s opaque mode).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

__all__ = [
    "AutoReferenceState",
    "ProfitDiagnostics",
    "ProfitState",
    "diagnostics",
    "find_profit_state",
    "profit",
    "ref_params",
]

_PROJECTIONS = ("global", "per_tensor")


class ProfitDiagnostics(NamedTuple):
    """Scalar diagnostics of the last main PROFIT step (all ``float32``).

    Attributes:
      conflict: 1.0 if the last main gradient conflicted with Δ (⟨g, Δ⟩ < 0) and
        was projected, else 0.0. With ``projection="per_tensor"``: the fraction
        of tensors (with Δ ≠ 0) that were projected.
      cos_g_delta: cosine of the angle between the main gradient g (before
        projection) and Δ over the whole parameter vector; 0.0 when Δ = 0.
      delta_norm: ‖Δ‖, the length of the reference displacement.
      grad_norm: ‖g‖ of the main gradient before projection.
      removed_norm: length of the component removed from g by the projection
        (0.0 without conflict).
      nonfinite_count: number of calls so far whose gradient was not finite and
        that were therefore skipped (no update, state unchanged).
    """

    conflict: jax.Array
    cos_g_delta: jax.Array
    delta_norm: jax.Array
    grad_norm: jax.Array
    removed_norm: jax.Array
    nonfinite_count: jax.Array


class AutoReferenceState(NamedTuple):
    """State of the automatic reference step (``reference_optimizer=None``).

    Attributes:
      main_step_norm: the length of the last main step, ‖θ_ref + u − θ'‖: from
        the point where the main gradient was taken (θ' = θ_ref + Δ) to the new
        parameters (0.0 before the first main step). It equals ‖u‖ to within
        ‖Δ‖ = ``ref_scale`` × the previous one, and, unlike ‖u‖, it is read off
        the new parameters without writing u out (one reduction, no
        parameter-sized temporary). The reference displacement per reference step
        is ``ref_scale * main_step_norm`` along −g/‖g‖.
    """

    main_step_norm: jax.Array


class ProfitState(NamedTuple):
    """State of :func:`profit`.

    Attributes:
      count: position in the current cycle, an ``int32`` in ``[0, n_ref]``:
        ``0 .. n_ref - 1`` means the next call is a reference call, ``n_ref``
        means it is the main call. Always 0 in one-call mode.
      theta_ref: θ_ref, the parameters at the start of the current cycle, in
        the parameters' dtypes; Δ = params − θ_ref is recomputed from it at the
        main call. This is the only parameter-sized buffer PROFIT keeps beyond
        the two optimizers' own states; it is stale (and unused) while
        ``count == 0``. ``None`` in one-call mode, which keeps no such buffer.
      main_state: state of the main optimizer; advances only on main calls.
      ref_state: state of the reference optimizer (or
        :class:`AutoReferenceState` for the automatic reference step).
      diagnostics: :class:`ProfitDiagnostics` of the last main step.
    """

    count: jax.Array
    theta_ref: optax.Params | None
    main_state: optax.OptState
    ref_state: optax.OptState
    diagnostics: ProfitDiagnostics


# ----------------------------------------------------------------------------
# Small helpers.


def _check_transformation(tx: Any, name: str) -> None:
    if isinstance(tx, optax.GradientTransformation | optax.GradientTransformationExtraArgs):
        return
    if callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None)):
        return
    raise TypeError(
        f"profit: `{name}` must be an optax.GradientTransformation (an object with "
        f"`init` and `update`), got {type(tx).__name__}: {tx!r}. Did you pass a "
        "learning rate or a factory such as `optax.adam` instead of `optax.adam(1e-4)`?"
    )


def _acc_dtype(dtype: Any) -> Any:
    """Accumulation dtype: at least float32 (float64 stays float64)."""
    return jnp.promote_types(dtype, jnp.float32)


def _f(x: jax.Array) -> jax.Array:
    return x.astype(_acc_dtype(x.dtype))


def _check_trees(grads: optax.Updates, params: optax.Params | None) -> None:
    if params is None:
        raise ValueError(
            "profit: `params` is required: call `tx.update(grads, state, params)`. PROFIT "
            "needs the current parameters to restore θ_ref at the end of each cycle."
        )
    g_def = jax.tree.structure(grads)
    p_def = jax.tree.structure(params)
    if g_def != p_def:
        raise ValueError(
            "profit: the gradient tree and the params tree differ.\n"
            f"  gradients: {g_def}\n  params:    {p_def}"
        )
    for (path, g), p in zip(
        jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(params), strict=True
    ):
        if jnp.shape(g) != jnp.shape(p):
            raise ValueError(
                f"profit: gradient and parameter shapes differ at {jax.tree_util.keystr(path)}: "
                f"{jnp.shape(g)} vs {jnp.shape(p)}."
            )


def _sumsq(tree: Any) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    return sum((jnp.sum(jnp.square(_f(x)), dtype=jnp.float32) for x in leaves), jnp.float32(0))


def _add_rounded(a: Any, b: Any) -> Any:
    """round(a + b) in ``a``'s dtypes, the sum taken in the accumulation dtype."""
    return jax.tree.map(lambda x, y: (_f(x) + _f(y)).astype(x.dtype), a, b)


def _sumsq_between(a: Any, b: Any) -> jax.Array:
    """‖a − b‖² over two trees, accumulated in float32 (float64 for float64 inputs)."""

    def leaf(x, y):
        acc = jnp.promote_types(_acc_dtype(x.dtype), _acc_dtype(y.dtype))
        return jnp.sum(jnp.square(x.astype(acc) - y.astype(acc)), dtype=acc)

    return sum(jax.tree.leaves(jax.tree.map(leaf, a, b)), jnp.float32(0)).astype(jnp.float32)


def _tree_select(pred: jax.Array, on_true: Any, on_false: Any) -> Any:
    return jax.tree.map(lambda a, b: jnp.where(pred, a, b), on_true, on_false)


def _zero_diagnostics() -> ProfitDiagnostics:
    # One array per field: shared buffers could not be donated together.
    z = lambda: jnp.zeros((), jnp.float32)
    return ProfitDiagnostics(z(), z(), z(), z(), z(), jnp.zeros((), jnp.int32))


def _projection_sums(grads: optax.Updates, delta: optax.Updates) -> jax.Array:
    """Per leaf (⟨g, Δ⟩, ‖Δ‖², ‖g‖²), shape ``(n_leaves, 3)``, in float32 (float64
    when an input is float64).

    Three plain ``jnp.sum`` reductions. A single fused variadic ``lax.reduce``
    reads g and Δ's inputs once instead of up to seven times on one CPU device,
    but it is not sharding-friendly: under explicit mesh axes its reshape does not
    trace, and under automatic axes XLA all-gathers Δ to compute it. The plain
    sums partition into local partial sums plus one small all-reduce, which XLA
    combines across leaves (``tests/test_collectives.py``).
    """

    def sums(g, d):
        acc = jnp.promote_types(_acc_dtype(g.dtype), _acc_dtype(d.dtype))
        g, d = g.astype(acc), d.astype(acc)
        return jnp.stack([jnp.sum(g * d), jnp.sum(d * d), jnp.sum(g * g)])

    g_leaves, treedef = jax.tree.flatten(grads)
    d_leaves = treedef.flatten_up_to(delta)
    return jnp.stack([sums(g, d) for g, d in zip(g_leaves, d_leaves, strict=True)])


def _projection_sums_between(
    grads: optax.Updates, new: optax.Params, old: optax.Params
) -> jax.Array:
    """Like :func:`_projection_sums` with Δ = ``new`` − ``old``, never materialising Δ.

    Each sum subtracts on its own (the two spellings keep XLA from merging them into
    one Δ written to a temporary buffer: one parameter-sized write and read fewer per
    main call, and no float32 Δ temporary in the step's memory).
    """

    def sums(g, a, b):
        acc = jnp.promote_types(jnp.promote_types(_acc_dtype(g.dtype), a.dtype), b.dtype)
        g, a, b = g.astype(acc), a.astype(acc), b.astype(acc)
        return jnp.stack([jnp.sum(g * (a - b)), jnp.sum(jnp.square(b - a)), jnp.sum(g * g)])

    g_leaves, treedef = jax.tree.flatten(grads)
    new_leaves, old_leaves = treedef.flatten_up_to(new), treedef.flatten_up_to(old)
    return jnp.stack(
        [sums(g, a, b) for g, a, b in zip(g_leaves, new_leaves, old_leaves, strict=True)]
    )


def _project(
    grads: optax.Updates, delta: optax.Updates, projection: str, sums: jax.Array
) -> tuple[optax.Updates, ProfitDiagnostics]:
    """Projects ``grads`` away from ``delta`` where ⟨g, Δ⟩ < 0.

    ``sums`` are the per-leaf (⟨g, Δ⟩, ‖Δ‖², ‖g‖²) of :func:`_projection_sums`.
    Returns the projected gradient (in the gradients' dtypes) and the
    diagnostics (``nonfinite_count`` left at 0). Products accumulate in float32.
    """
    g_leaves, treedef = jax.tree.flatten(grads)
    d_leaves = treedef.flatten_up_to(delta)
    dots, dds = sums[:, 0], sums[:, 1]
    dot, dd, gg = jnp.sum(sums, axis=0)

    if projection == "global":
        conflict = (dot < 0) & (dd > 0)
        coef = jnp.where(conflict, dot / jnp.where(dd > 0, dd, 1.0), 0.0)
        coefs = jnp.broadcast_to(coef, dots.shape)
        conflict_stat = conflict.astype(jnp.float32)
        removed = jnp.abs(coef) * jnp.sqrt(dd)
    else:  # per_tensor
        conflicts = (dots < 0) & (dds > 0)
        coefs = jnp.where(conflicts, dots / jnp.where(dds > 0, dds, 1.0), 0.0)
        n_active = jnp.sum(dds > 0).astype(jnp.float32)
        n_conf = jnp.sum(conflicts).astype(jnp.float32)
        conflict_stat = jnp.where(n_active > 0, n_conf / jnp.maximum(n_active, 1.0), 0.0)
        removed = jnp.sqrt(jnp.sum(jnp.square(coefs) * dds))

    projected = [
        (_f(g) - coefs[i].astype(_acc_dtype(g.dtype)) * _f(d)).astype(g.dtype)
        for i, (g, d) in enumerate(zip(g_leaves, d_leaves, strict=True))
    ]
    denom = jnp.sqrt(gg) * jnp.sqrt(dd)
    cos = jnp.where(denom > 0, dot / jnp.where(denom > 0, denom, 1.0), 0.0)
    f32 = lambda x: jnp.asarray(x, jnp.float32)
    diag = ProfitDiagnostics(
        conflict=f32(conflict_stat),
        cos_g_delta=f32(cos),
        delta_norm=f32(jnp.sqrt(dd)),
        grad_norm=f32(jnp.sqrt(gg)),
        removed_norm=f32(removed),
        nonfinite_count=jnp.zeros((), jnp.int32),
    )
    return jax.tree.unflatten(treedef, projected), diag


# ----------------------------------------------------------------------------
# The transformation.


#: The automatic reference step's default ``ref_scale``: the value with the smallest
#: worst-case validation gap to the best fixed λ_ref, in units of seed std, over the
#: λ_ref sweeps' tasks where PROFIT is stable (2D toy with SGD-momentum, Fashion-MNIST MLP
#: and ViT); see ``docs/lambda_ref.md``. It was 0.01 before 2026-11-23.
DEFAULT_REF_SCALE = 3e-4


def profit(
    optimizer: optax.GradientTransformation,
    reference_optimizer: optax.GradientTransformation | None = None,
    *,
    n_ref: int = 1,
    projection: Literal["global", "per_tensor"] = "global",
    reset_reference_state: bool = False,
    ref_scale: float | None = None,
    one_call: bool = False,
    memory: Literal["exact", "lean"] = "exact",
) -> optax.GradientTransformationExtraArgs:
    r"""PROFIT: proximal fine-tuning around a converged model.

    Wraps a *main* optimizer (the one you would fine-tune with, e.g.
    ``optax.adam(1e-4)``) and a *reference* optimizer (plain SGD with a small
    learning rate in the paper). Each cycle:

    1. θ_ref ← θ; take ``n_ref`` reference-optimizer steps to reach θ';
    2. Δ ← θ' − θ_ref; take a fresh gradient g at θ';
    3. if ⟨g, Δ⟩ < 0: g ← g − (⟨g, Δ⟩ / ‖Δ‖²) Δ (only g is changed);
    4. θ ← θ_ref, then the main optimizer steps with g.

    In the default *alternating* mode the training loop is the ordinary Optax
    loop with one gradient per call; calls cycle with period ``n_ref + 1``. The
    first ``n_ref`` calls of a cycle return the reference optimizer's updates
    (the parameters visit θ'), the last call returns the update that lands the
    parameters exactly at ``round(θ_ref + u_main)``. Evaluate, log or checkpoint
    the model after a main call, or use :func:`ref_params` to read θ_ref
    mid-cycle. PROFIT must be the last transformation of a chain (it returns
    an update relative to the current parameters), like ``optax.lookahead``.

    Each call does only its own phase's work (``jax.lax.switch``): a reference
    call never runs the main optimizer and vice versa.

    Examples:
      >>> import jax, jax.numpy as jnp, numpy as np, optax, profit_optax
      >>> tx = profit_optax.profit(optax.sgd(0.1), optax.sgd(1e-3))
      >>> params = {"w": jnp.array([1.0, -1.0])}
      >>> state = tx.init(params)
      >>> loss = lambda p, x: jnp.sum((p["w"] - x) ** 2)
      >>> for x in (0.0, 0.5, -0.5, 1.0):  # two cycles: reference, main, reference, main
      ...     grads = jax.grad(loss)(params, jnp.array([x, 0.0]))
      ...     updates, state = tx.update(grads, state, params)
      ...     params = optax.apply_updates(params, updates)
      >>> int(state.count)  # back at the start of a cycle
      0
      >>> np.asarray(params["w"]).round(3)
      array([ 1.132, -0.816], dtype=float32)

    Args:
      optimizer: the main optimizer, an ``optax.GradientTransformation``. Its
        state advances only on main calls; it sees θ_ref as ``params``.
      reference_optimizer: the reference optimizer, typically
        ``optax.sgd(λ_main / 100)`` (the paper: λ_main/10 … λ_main/10⁴). If
        ``None``, an automatic, scale-free reference step is used: each
        reference step moves ``ref_scale × ‖u_main‖`` along −g/‖g‖, where
        ‖u_main‖ is the length of the last main step (from the point where the
        main gradient was taken to the new parameters: ‖u‖ to within
        ``ref_scale``; the first cycle, before any main update, takes no
        reference step).
      n_ref: number of reference steps per cycle (the paper uses 1).
      projection: ``"global"`` (the paper: one inner product over the whole
        parameter vector) or ``"per_tensor"`` (each leaf projected on its own).
      reset_reference_state: re-initialise the reference optimizer's state at
        the end of every cycle. The paper keeps each optimizer's own state, so
        the default is ``False``; irrelevant for stateless SGD.
      ref_scale: the automatic reference step's length relative to the main
        step (only used with ``reference_optimizer=None``). ``None``:
        :data:`DEFAULT_REF_SCALE` (3e-4, chosen on the validation splits of the
        λ_ref sweeps, see ``docs/lambda_ref.md``); with ``memory="lean"``, that
        mode's own default (0.01).
      one_call: if ``True``, ``update(grads, state, params, grad_fn=...)``
        performs a whole cycle in one call: ``grads`` is the first reference
        gradient at θ_ref and ``grad_fn(params, i)`` (``i = 0 .. n_ref - 1``)
        returns the gradient after the ``i``-th reference step; the last one is
        the main gradient. Needs no Δ buffer between calls. Prefer it when a
        forward pass has side effects (batch-norm statistics, RNG streams) that
        should only see real parameters; prefer alternating mode to keep an
        unmodified training loop and one gradient per step.

      memory: ``"exact"`` (default): Algorithm 1, one θ_ref buffer. ``"lean"``:
        the memory-lean approximation :func:`~profit_optax.profit_lean` (Δ read
        off the main optimizer's momentum, no parameter-sized buffer beyond the
        main optimizer's state, one gradient per main step). Off by default: on
        our toys it tracks Adam rather than exact PROFIT (``docs/real_runs.md``).
        Needs ``reference_optimizer=None``, ``n_ref=1`` and ``one_call=False``.

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose state is a
      :class:`ProfitState` (a :class:`~profit_optax.ProfitLeanState` for
      ``memory="lean"``).

    Raises:
      TypeError: if an optimizer is not a gradient transformation.
      ValueError: for ``n_ref < 1``, an unknown ``projection``, a non-positive
        ``ref_scale``; at update time for ``params=None``, gradient and params
        trees that differ, or a missing ``grad_fn`` in one-call mode.

    References:
      Chakravarthy et al., `PROFIT: A Specialized Optimizer for Deep Fine
      Tuning <https://arxiv.org/abs/2412.01930>`_, NeurIPS 2025.
    """
    _check_transformation(optimizer, "optimizer")
    if memory not in ("exact", "lean"):
        raise ValueError(f"profit: `memory` must be 'exact' or 'lean', got {memory!r}.")
    if memory == "lean":
        if reference_optimizer is not None or n_ref != 1 or one_call:
            raise ValueError(
                "profit(memory='lean') reads Δ off the main optimizer's momentum: it takes no "
                "reference optimizer, n_ref=1 and one_call=False."
            )
        from profit_optax._src.lean import profit_lean  # lean builds on this module

        lean_kw = {} if ref_scale is None else {"ref_scale": ref_scale}
        return profit_lean(optimizer, projection=projection, **lean_kw)
    auto_ref = reference_optimizer is None
    if ref_scale is None:
        ref_scale = DEFAULT_REF_SCALE
    if not auto_ref:
        _check_transformation(reference_optimizer, "reference_optimizer")
    if isinstance(n_ref, bool) or not isinstance(n_ref, int | jnp.integer) or n_ref < 1:
        raise ValueError(f"profit: `n_ref` must be an integer >= 1, got {n_ref!r}.")
    n_ref = int(n_ref)
    if projection not in _PROJECTIONS:
        raise ValueError(f"profit: `projection` must be one of {_PROJECTIONS}, got {projection!r}.")
    if auto_ref and not (isinstance(ref_scale, int | float) and ref_scale > 0):
        raise ValueError(f"profit: `ref_scale` must be a positive number, got {ref_scale!r}.")

    # -- reference step ---------------------------------------------------------

    def ref_init(params: optax.Params) -> optax.OptState:
        if auto_ref:
            return AutoReferenceState(main_step_norm=jnp.zeros((), jnp.float32))
        return reference_optimizer.init(params)

    def ref_step(grads, ref_state, params, gg):
        """Returns (reference update, new ref state); ``gg`` = ‖grads‖² in float32."""
        if auto_ref:
            step = ref_scale * ref_state.main_step_norm
            factor = jnp.where(gg > 0, step / jnp.sqrt(jnp.where(gg > 0, gg, 1.0)), 0.0)
            updates = jax.tree.map(lambda g: (-factor * _f(g)).astype(g.dtype), grads)
            return updates, ref_state
        return reference_optimizer.update(grads, ref_state, params)

    # -- main step ----------------------------------------------------------------

    def main_step(grads, main_state, ref_state, theta_ref, delta, sums):
        """Projects g, runs the main optimizer at θ_ref. Returns (u, state parts, diag).

        The automatic reference state is left to the caller (``main_step_norm``)."""
        g_proj, diag = _project(grads, delta, projection, sums)
        u, main_state = optimizer.update(g_proj, main_state, theta_ref)
        if reset_reference_state and not auto_ref:
            ref_state = reference_optimizer.init(theta_ref)
        return u, main_state, ref_state, diag

    # The main call writes the reference state only for the automatic reference step
    # (the main step's length) or when resetting it; otherwise the reference state never
    # enters the main branch.
    main_writes_ref_state = auto_ref or reset_reference_state

    def with_skips(diag: ProfitDiagnostics, finite) -> ProfitDiagnostics:
        return diag._replace(
            nonfinite_count=diag.nonfinite_count + jnp.where(finite, 0, 1).astype(jnp.int32)
        )

    # -- init ---------------------------------------------------------------------

    def init_fn(params: optax.Params) -> ProfitState:
        return ProfitState(
            count=jnp.zeros((), jnp.int32),
            # zeros, not `params`: θ_ref is unused until the first reference call, and
            # aliasing the params buffer would break `donate_argnums=(params, state)`.
            theta_ref=None if one_call else optax.tree.zeros_like(params),
            main_state=optimizer.init(params),
            ref_state=ref_init(params),
            diagnostics=_zero_diagnostics(),
        )

    # -- alternating mode -----------------------------------------------------------
    #
    # Cost is passes over memory. XLA copies every buffer that a conditional branch
    # passes through unchanged while another branch writes to it, and it cannot fuse
    # across a conditional. So the call is organised as:
    #   1. one conditional for the main phase whose every output is written by the main
    #      branch and passed through by the other: θ_ref ← round(θ_ref + u), the main
    #      state, the diagnostics (no copies);
    #   2. one conditional that saves θ_ref ← params at the first call of a cycle;
    #   3. the reference step (SGD: −λ·g) outside any conditional, so that it fuses
    #      into the loop that applies the update: the update is
    #      where(main, θ_ref_new − params, reference update).
    # See benchmarks/RESULTS.md for the measured passes and timings.

    def alternating_update_fn(
        updates: optax.Updates,
        state: ProfitState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, ProfitState]:
        del extra_args
        _check_trees(updates, params)
        grads = updates
        is_main = state.count == n_ref
        is_first = state.count == 0

        # 1. main phase. A non-finite gradient takes the inner identity branch, so
        # nothing is written. (Selecting with `finite` would read the old state in the
        # same fusion that overwrites it, and XLA answers that with copies.)
        def main_branch(ops):
            sums = _projection_sums_between(grads, params, ops[0])  # Δ = θ' − θ_ref
            finite = jnp.isfinite(jnp.sum(sums[:, 2]))

            def step(ops):
                theta_ref, main_state, ref_state, diag = ops
                # Δ recomputed here, fused into the projection (not a stored temporary).
                delta = jax.tree.map(lambda p, r: _f(p) - _f(r), params, theta_ref)
                u, new_main, new_ref, new_diag = main_step(
                    grads, main_state, ref_state, theta_ref, delta, sums
                )
                # round(θ_ref + u): the parameters at the end of the cycle, exactly.
                new_theta = _add_rounded(theta_ref, u)
                if auto_ref:  # read off the new θ_ref: u itself is never written out
                    new_ref = AutoReferenceState(jnp.sqrt(_sumsq_between(params, new_theta)))
                new_diag = new_diag._replace(nonfinite_count=diag.nonfinite_count)
                return new_theta, new_main, new_ref, new_diag

            def skip(ops):
                theta_ref, main_state, ref_state, diag = ops
                return theta_ref, main_state, ref_state, with_skips(diag, False)

            return jax.lax.cond(finite, step, skip, ops), finite

        (theta_ref, main_state, ref_out, diag), main_finite = jax.lax.cond(
            is_main,
            main_branch,
            lambda ops: (ops, jnp.array(True)),
            (
                state.theta_ref,
                state.main_state,
                state.ref_state if main_writes_ref_state else None,
                state.diagnostics,
            ),
        )
        # ‖g‖² of a reference gradient: its finiteness, and the automatic step's scale.
        gg = jax.lax.cond(is_main, lambda: jnp.float32(0), lambda: _sumsq(grads))
        ref_finite = jnp.isfinite(gg)
        finite = jnp.where(is_main, main_finite, ref_finite)

        # 2. θ_ref ← params at the first call of a cycle (not on a skipped call).
        theta_ref = jax.lax.cond(
            is_first & finite, lambda t: jax.tree.map(jnp.copy, params), lambda t: t, theta_ref
        )

        # 3. the reference step, fused into the update.
        ref_state = ref_out if main_writes_ref_state else state.ref_state
        u_ref, new_ref = ref_step(grads, ref_state, params, gg)
        ref_state = _tree_select((~is_main) & finite, new_ref, ref_state)

        def final(p, r, ur):
            acc = _acc_dtype(p.dtype)
            main_u = (r.astype(acc) - p.astype(acc)).astype(p.dtype)
            out = jnp.where(is_main, main_u, ur.astype(p.dtype))
            return jnp.where(finite, out, jnp.zeros_like(p))

        out_updates = jax.tree.map(final, params, theta_ref, u_ref)
        count = jnp.where(finite, jnp.where(is_main, 0, state.count + 1), state.count)
        diag = _tree_select(is_main, diag, with_skips(diag, ref_finite))
        return out_updates, ProfitState(
            count=count.astype(jnp.int32),
            theta_ref=theta_ref,
            main_state=main_state,
            ref_state=ref_state,
            diagnostics=diag,
        )

    # -- one-call mode ----------------------------------------------------------------

    def one_call_update_fn(
        updates: optax.Updates,
        state: ProfitState,
        params: optax.Params | None = None,
        *,
        grad_fn: Callable[[optax.Params, int], optax.Updates] | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, ProfitState]:
        del extra_args
        _check_trees(updates, params)
        if grad_fn is None:
            raise ValueError(
                "profit(one_call=True): `grad_fn` is required: "
                "`tx.update(grads, state, params, grad_fn=lambda p, i: grad(loss)(p, batches[i]))`."
            )

        def body(i, carry):
            probe, g, ref_state, finite = carry
            gg = _sumsq(g)
            u, new_ref_state = ref_step(g, ref_state, probe, gg)
            probe = _add_rounded(probe, u)
            g = grad_fn(probe, i)
            return probe, g, new_ref_state, finite & jnp.isfinite(gg)

        probe, g_main, ref_state, finite = jax.lax.fori_loop(
            0, n_ref, body, (params, updates, state.ref_state, jnp.array(True))
        )
        delta = jax.tree.map(lambda q, p: _f(q) - _f(p), probe, params)
        sums = _projection_sums_between(g_main, probe, params)
        finite = finite & jnp.isfinite(jnp.sum(sums[:, 2]))
        u, main_state, ref_state, diag = main_step(
            g_main, state.main_state, ref_state, params, delta, sums
        )
        if auto_ref:  # as in alternating mode: ‖θ_ref + u − θ'‖
            step_sq = _sumsq_between(_add_rounded(params, u), probe)
            ref_state = AutoReferenceState(jnp.sqrt(step_sq))
        out = jax.tree.map(
            lambda p, ui: jnp.where(finite, ui.astype(p.dtype), jnp.zeros_like(p)), params, u
        )
        new_diag = diag._replace(nonfinite_count=state.diagnostics.nonfinite_count)
        new_state = state._replace(
            main_state=_tree_select(finite, main_state, state.main_state),
            ref_state=_tree_select(finite, ref_state, state.ref_state),
            diagnostics=_tree_select(finite, new_diag, with_skips(state.diagnostics, finite)),
        )
        return out, new_state

    update_fn = one_call_update_fn if one_call else alternating_update_fn
    return optax.GradientTransformationExtraArgs(init_fn, update_fn)


# ----------------------------------------------------------------------------
# Reading the state.


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
    """Returns the unique :class:`ProfitState` inside ``opt_state``.

    Works on a bare PROFIT state and on states of transformations that contain
    one (``optax.chain``, ``optax.inject_hyperparams``, ``optax.MultiSteps``,
    ``optax.apply_if_finite``, ...).

    Raises:
      ValueError: if there is no PROFIT state or more than one.
    """
    return _find_unique(opt_state, ProfitState)


def ref_params(params: optax.Params, opt_state: Any) -> optax.Params:
    """The fine-tuned model's parameters θ_ref, also in the middle of a cycle.

    After a main call (``count == 0``) these are ``params`` themselves; after a
    reference call they are the stored θ_ref (exactly the parameters the cycle
    started from). Use them for evaluation, logging and checkpoints.

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
    from profit_optax._src.lean import ProfitLeanState, lean_ref_params

    params, opt_state = _unwrap(params), _unwrap(opt_state)
    if _contains(opt_state, ProfitLeanState):
        return lean_ref_params(params, opt_state)
    state = find_profit_state(opt_state)
    if state.theta_ref is None:  # one-call mode: params are always θ_ref
        return params
    mid_cycle = state.count > 0
    return jax.tree.map(lambda p, r: jnp.where(mid_cycle, r, p), params, state.theta_ref)


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
      opt_state: the PROFIT state, or an optimizer state containing exactly one.

    Returns:
      A dict with the fields of :class:`ProfitDiagnostics`.
    """
    from profit_optax._src.lean import ProfitLeanState, find_profit_lean_state

    opt_state = _unwrap(opt_state)
    if _contains(opt_state, ProfitLeanState):
        return find_profit_lean_state(opt_state).diagnostics._asdict()
    return find_profit_state(opt_state).diagnostics._asdict()
