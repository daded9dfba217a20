"""PROFIT: PROximal FIne Tuning, as an Optax gradient transformation.

Implements Algorithm 1 of Chakravarthy et al., "PROFIT: A Specialized Optimizer
for Deep Fine Tuning", NeurIPS 2025 (https://arxiv.org/abs/2412.01930). Each
cycle, from the current parameters θ:

1. θ_ref ← θ; ``n_ref`` *reference* steps reach θ' (:func:`_reference_step`);
2. Δ ← θ' − θ_ref; a fresh gradient g is taken at θ';
3. if ⟨g, Δ⟩ < 0: g ← g − (⟨g, Δ⟩ / ‖Δ‖²) Δ (:func:`~profit_optax._src.numerics.project`);
4. θ ← θ_ref, then the *main* optimizer steps with g: θ ← round(θ_ref + u)
   (:func:`_main_phase`).

Near a converged point −Δ is a descent direction of the old task's loss, so the
main step does not undo what the model already knows (to first order).

Two drivers run the cycle: :func:`_alternating_update` (default; one gradient per
``update`` call, calls cycle with period ``n_ref + 1``) and
:func:`_one_call_update` (``one_call=True``; the whole cycle in one call, asking
``grad_fn(params, i)`` for the gradients it needs, like ``optax.contrib.sam``'s
opaque mode). Sums and the projection are in :mod:`profit_optax._src.numerics`,
the state readers (``ref_params``, ``diagnostics``) in
:mod:`profit_optax._src.readers`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import optax

from profit_optax._src.checks import check_projection, check_transformation, check_trees
from profit_optax._src.numerics import (
    ProfitDiagnostics,
    acc_dtype,
    add_rounded,
    count_nonfinite,
    project,
    projection_sums_between,
    sumsq,
    sumsq_between,
    to_acc,
    zero_diagnostics,
)

__all__ = ["DEFAULT_REF_SCALE", "AutoReferenceState", "ProfitState", "profit"]

#: The automatic reference step's default ``ref_scale``: the value with the smallest
#: worst-case validation gap to the best fixed λ_ref, in units of seed std, over the
#: λ_ref sweeps' tasks where PROFIT is stable (2D toy with SGD-momentum, Fashion-MNIST MLP
#: and ViT); see ``docs/lambda_ref.md``. It was 0.01 before 2026-11-23.
DEFAULT_REF_SCALE = 3e-4


# ----------------------------------------------------------------------------
# State.


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

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as in optax's states
    theta_ref: optax.Params | None
    main_state: optax.OptState
    ref_state: optax.OptState
    diagnostics: ProfitDiagnostics


@dataclasses.dataclass(frozen=True)
class _Config:
    """The arguments of :func:`profit`, checked."""

    optimizer: optax.GradientTransformation
    reference_optimizer: optax.GradientTransformation | None  # None: the automatic step
    n_ref: int
    projection: str
    reset_reference_state: bool
    ref_scale: float
    one_call: bool

    @property
    def main_writes_ref_state(self) -> bool:
        """Whether the main phase writes the reference state: for the automatic step (the
        main step's length) or when resetting it. Otherwise the reference state never
        enters the main phase's conditional (no copy of it, no pass over it)."""
        return self.reference_optimizer is None or self.reset_reference_state


def _init(cfg: _Config, params: optax.Params) -> ProfitState:
    if cfg.reference_optimizer is None:
        ref_state = AutoReferenceState(main_step_norm=jnp.zeros((), jnp.float32))
    else:
        ref_state = cfg.reference_optimizer.init(params)
    return ProfitState(
        count=jnp.zeros((), jnp.int32),
        # zeros, not `params`: θ_ref is unused until the first reference call, and
        # aliasing the params buffer would break `donate_argnums=(params, state)`.
        theta_ref=None if cfg.one_call else optax.tree.zeros_like(params),
        main_state=cfg.optimizer.init(params),
        ref_state=ref_state,
        diagnostics=zero_diagnostics(),
    )


# ----------------------------------------------------------------------------
# The two phases.


def _reference_step(
    cfg: _Config,
    grads: optax.Updates,
    ref_state: optax.OptState,
    params: optax.Params,
    grad_sumsq: jax.Array,
) -> tuple[optax.Updates, optax.OptState]:
    """One reference step (step 1): the update and the new reference state.

    ``grad_sumsq`` is ‖grads‖² in float32. The automatic step moves
    ``ref_scale × main_step_norm`` along −g/‖g‖ and keeps its state.
    """
    if cfg.reference_optimizer is not None:
        return cfg.reference_optimizer.update(grads, ref_state, params)
    gg = grad_sumsq
    step = cfg.ref_scale * ref_state.main_step_norm
    factor = jnp.where(gg > 0, step / jnp.sqrt(jnp.where(gg > 0, gg, 1.0)), 0.0)
    return jax.tree.map(lambda g: (-factor * to_acc(g)).astype(g.dtype), grads), ref_state


class _MainPhase(NamedTuple):
    """What the main phase writes: θ_ref (← round(θ_ref + u)), the main optimizer's
    state, the reference state (``None`` unless ``cfg.main_writes_ref_state``) and the
    diagnostics."""

    theta_ref: optax.Params
    main_state: optax.OptState
    ref_state: optax.OptState
    diagnostics: ProfitDiagnostics


def _main_phase(
    cfg: _Config,
    grads: optax.Updates,
    probe: optax.Params,
    sums: jax.Array,
    before: _MainPhase,
) -> tuple[_MainPhase, optax.Updates]:
    """Steps 2–4 at the main gradient ``grads``, taken at ``probe`` = θ'.

    Δ = θ' − θ_ref (recomputed here, fused into the projection, never stored),
    ``sums`` its :func:`~profit_optax._src.numerics.projection_sums_between`. Projects
    g off Δ, steps the main optimizer at θ_ref and lands exactly at round(θ_ref + u).
    Returns the new phase state (diagnostics with ``nonfinite_count`` carried over) and u.
    """
    theta_ref = before.theta_ref
    delta = jax.tree.map(lambda q, r: to_acc(q) - to_acc(r), probe, theta_ref)
    g_proj, diag = project(grads, delta, cfg.projection, sums)
    u, main_state = cfg.optimizer.update(g_proj, before.main_state, theta_ref)
    new_theta = add_rounded(theta_ref, u)
    ref_state = before.ref_state
    if cfg.reference_optimizer is None:  # the step's length, read off the new θ_ref
        ref_state = AutoReferenceState(jnp.sqrt(sumsq_between(probe, new_theta)))
    elif cfg.reset_reference_state:
        ref_state = cfg.reference_optimizer.init(theta_ref)
    diag = diag._replace(nonfinite_count=before.diagnostics.nonfinite_count)
    return _MainPhase(new_theta, main_state, ref_state, diag), u


# ----------------------------------------------------------------------------
# Alternating mode: one gradient per call.
#
# Cost is passes over memory. XLA copies every buffer that a conditional branch
# passes through unchanged while another branch writes to it, and it cannot fuse
# across a conditional. So a call is organised as:
#   1. one conditional for the main phase whose every output is written by the main
#      branch and passed through by the other: θ_ref ← round(θ_ref + u), the main
#      state, the diagnostics (no copies);
#   2. one conditional that saves θ_ref ← params at the first call of a cycle;
#   3. the reference step (SGD: −λ·g) outside any conditional, on every call, so that
#      it fuses into the loop that writes the update:
#      where(main, θ_ref_new − params, reference update).
# See benchmarks/RESULTS.md for the measured passes and timings.


def _main_call(
    cfg: _Config, grads: optax.Updates, params: optax.Params, before: _MainPhase
) -> tuple[_MainPhase, jax.Array]:
    """The main phase of a main call, skipped (nothing written) for a non-finite g.

    A non-finite gradient takes the inner pass-through branch. (Selecting with
    ``finite`` afterwards would read the old state in the same fusion that overwrites
    it, and XLA answers that with copies.)
    """
    sums = projection_sums_between(grads, params, before.theta_ref)  # Δ = θ' − θ_ref
    finite = jnp.isfinite(jnp.sum(sums[:, 2]))
    run = lambda b: _main_phase(cfg, grads, params, sums, b)[0]
    skip = lambda b: b._replace(diagnostics=count_nonfinite(b.diagnostics, jnp.array(False)))
    return jax.lax.cond(finite, run, skip, before), finite


def _alternating_update(
    cfg: _Config, grads: optax.Updates, state: ProfitState, params: optax.Params | None
) -> tuple[optax.Updates, ProfitState]:
    check_trees(grads, params, "profit")
    is_main = state.count == cfg.n_ref
    writes_ref = cfg.main_writes_ref_state

    # 1. The main phase, on main calls only.
    before = _MainPhase(
        state.theta_ref,
        state.main_state,
        state.ref_state if writes_ref else None,
        state.diagnostics,
    )
    after, main_finite = jax.lax.cond(
        is_main,
        functools.partial(_main_call, cfg, grads, params),
        lambda b: (b, jnp.array(True)),
        before,
    )
    # ‖g‖² of a reference gradient: its finiteness, and the automatic step's scale.
    gg = jax.lax.cond(is_main, lambda: jnp.float32(0), lambda: sumsq(grads))
    ref_finite = jnp.isfinite(gg)
    finite = jnp.where(is_main, main_finite, ref_finite)

    # 2. θ_ref ← params at the first call of a cycle (not on a skipped call).
    save = (state.count == 0) & finite
    theta_ref = jax.lax.cond(
        save, lambda t: jax.tree.map(jnp.copy, params), lambda t: t, after.theta_ref
    )

    # 3. The reference step, on every call, fused into the update; selected on
    # reference calls.
    ref_state = after.ref_state if writes_ref else state.ref_state
    u_ref, new_ref_state = _reference_step(cfg, grads, ref_state, params, gg)
    ref_state = optax.tree.where((~is_main) & finite, new_ref_state, ref_state)

    def leaf_update(p: jax.Array, r: jax.Array, ur: jax.Array) -> jax.Array:
        acc = acc_dtype(p.dtype)
        main_u = (r.astype(acc) - p.astype(acc)).astype(p.dtype)  # lands on θ_ref_new
        out = jnp.where(is_main, main_u, ur.astype(p.dtype))
        return jnp.where(finite, out, jnp.zeros_like(p))

    updates = jax.tree.map(leaf_update, params, theta_ref, u_ref)
    count = jnp.where(finite, jnp.where(is_main, 0, state.count + 1), state.count)
    diag = optax.tree.where(
        is_main, after.diagnostics, count_nonfinite(after.diagnostics, ref_finite)
    )
    new_state = ProfitState(count.astype(jnp.int32), theta_ref, after.main_state, ref_state, diag)
    return updates, new_state


# ----------------------------------------------------------------------------
# One-call mode: the whole cycle in one call.


class _Probe(NamedTuple):
    """The carry of the reference steps: the probe point, the gradient there, the
    reference state, and whether every gradient so far was finite."""

    probe: optax.Params
    grads: optax.Updates
    ref_state: optax.OptState
    finite: jax.Array


def _probe_step(cfg: _Config, grad_fn: Callable, i: Any, carry: _Probe) -> _Probe:
    gg = sumsq(carry.grads)
    u, ref_state = _reference_step(cfg, carry.grads, carry.ref_state, carry.probe, gg)
    probe = add_rounded(carry.probe, u)
    return _Probe(probe, grad_fn(probe, i), ref_state, carry.finite & jnp.isfinite(gg))


def _one_call_update(
    cfg: _Config,
    grads: optax.Updates,
    state: ProfitState,
    params: optax.Params | None,
    grad_fn: Callable[[optax.Params, int], optax.Updates] | None,
) -> tuple[optax.Updates, ProfitState]:
    check_trees(grads, params, "profit")
    if grad_fn is None:
        raise ValueError(
            "profit(one_call=True): `grad_fn` is required: "
            "`tx.update(grads, state, params, grad_fn=lambda p, i: grad(loss)(p, batches[i]))`."
        )
    # A Python loop over the static n_ref, not `lax.fori_loop`: XLA:CPU runs convolutions
    # inside a while loop ~15x slower than outside one (experiments/resnet_sizing.md), and
    # an unrolled loop lets the probe gradients fuse with their neighbours on every backend.
    end = _Probe(params, grads, state.ref_state, jnp.array(True))
    for i in range(cfg.n_ref):
        end = _probe_step(cfg, grad_fn, i, end)
    sums = projection_sums_between(end.grads, end.probe, params)
    finite = end.finite & jnp.isfinite(jnp.sum(sums[:, 2]))
    before = _MainPhase(params, state.main_state, end.ref_state, state.diagnostics)
    after, u = _main_phase(cfg, end.grads, end.probe, sums, before)
    updates = jax.tree.map(
        lambda p, ui: jnp.where(finite, ui.astype(p.dtype), jnp.zeros_like(p)), params, u
    )
    return updates, state._replace(
        main_state=optax.tree.where(finite, after.main_state, state.main_state),
        ref_state=optax.tree.where(finite, after.ref_state, state.ref_state),
        diagnostics=optax.tree.where(
            finite, after.diagnostics, count_nonfinite(state.diagnostics, finite)
        ),
    )


# ----------------------------------------------------------------------------
# The transformation.


def profit(
    optimizer: optax.GradientTransformation,
    reference_optimizer: optax.GradientTransformation | None = None,
    *,
    n_ref: int = 1,
    projection: Literal["global", "per_tensor"] = "global",
    reset_reference_state: bool = False,
    ref_scale: float | None = None,
    one_call: bool = False,
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
    parameters at ``round(θ_ref + u_main)``. Evaluate, log or checkpoint
    the model after a main call, or use :func:`ref_params` to read θ_ref
    mid-cycle. PROFIT must be the last transformation of a chain (it returns
    an update relative to the current parameters), like ``optax.lookahead``.

    What a call computes: one compiled program serves every call. The main
    phase (projection, main optimizer, restore) sits in a ``jax.lax.cond`` taken
    on main calls only, so a reference call never runs the main optimizer. The
    reference optimizer's update is computed on every call, outside any
    conditional, so that it fuses into the loop that writes the update, and is
    discarded on main calls (for SGD that is one multiply in a loop the call
    runs anyway). θ_ref is saved (copied from the parameters) at the first call
    of each cycle.

    The memory-lean approximation, which keeps no θ_ref, is a separate
    transformation, :func:`~profit_optax.profit_lean` (see there why).

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
        λ_ref sweeps, see ``docs/lambda_ref.md``).
      one_call: if ``True``, ``update(grads, state, params, grad_fn=...)``
        performs a whole cycle in one call: ``grads`` is the first reference
        gradient at θ_ref and ``grad_fn(params, i)`` (``i = 0 .. n_ref - 1``, a
        Python ``int``: the cycle is unrolled at trace time) returns the gradient
        after the ``i``-th reference step; the last one is the main gradient.
        Needs no Δ buffer between calls. Prefer it when a forward pass has side
        effects (batch-norm statistics, RNG streams) that should only see real
        parameters; prefer alternating mode to keep an unmodified training loop
        and one gradient per step (and a compile time that does not grow with
        ``n_ref``).

    Returns:
      An ``optax.GradientTransformationExtraArgs`` whose state is a
      :class:`ProfitState`.

    Raises:
      TypeError: if an optimizer is not a gradient transformation.
      ValueError: for ``n_ref < 1``, an unknown ``projection``, a non-positive
        ``ref_scale``; at update time for ``params=None``, gradient and params
        trees that differ, or a missing ``grad_fn`` in one-call mode.

    References:
      Chakravarthy et al., `PROFIT: A Specialized Optimizer for Deep Fine
      Tuning <https://arxiv.org/abs/2412.01930>`_, NeurIPS 2025.
    """
    check_transformation(optimizer, "optimizer", "profit")
    auto_ref = reference_optimizer is None
    if ref_scale is None:
        ref_scale = DEFAULT_REF_SCALE
    if not auto_ref:
        check_transformation(reference_optimizer, "reference_optimizer", "profit")
    if isinstance(n_ref, bool) or not isinstance(n_ref, int | jnp.integer) or n_ref < 1:
        raise ValueError(f"profit: `n_ref` must be an integer >= 1, got {n_ref!r}.")
    check_projection(projection, "profit")
    if auto_ref and not (isinstance(ref_scale, int | float) and ref_scale > 0):
        raise ValueError(f"profit: `ref_scale` must be a positive number, got {ref_scale!r}.")
    cfg = _Config(
        optimizer=optimizer,
        reference_optimizer=reference_optimizer,
        n_ref=int(n_ref),
        projection=projection,
        reset_reference_state=bool(reset_reference_state),
        ref_scale=float(ref_scale),
        one_call=bool(one_call),
    )

    def init_fn(params: optax.Params) -> ProfitState:
        return _init(cfg, params)

    def update_fn(
        updates: optax.Updates,
        state: ProfitState,
        params: optax.Params | None = None,
        *,
        grad_fn: Callable[[optax.Params, int], optax.Updates] | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, ProfitState]:
        del extra_args
        if cfg.one_call:
            return _one_call_update(cfg, updates, state, params, grad_fn)
        return _alternating_update(cfg, updates, state, params)

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
