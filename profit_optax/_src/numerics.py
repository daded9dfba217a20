"""Shared numerics: the accumulation dtype, sums over trees, PROFIT's projection.

Every transformation of the package (PROFIT, its lean mode, FTP, L2-SP) does its
mixed-precision arithmetic in the *accumulation dtype* (:func:`acc_dtype`): float32
for half- and single-precision inputs, float64 for float64 inputs. Reductions
accumulate in at least float32: the projection's sums (:func:`projection_sums`)
in the accumulation dtype, the squared norms :func:`sumsq` in float32 (also for
float64 inputs) and :func:`sumsq_between` in the accumulation dtype, both
returned as float32 scalars. The projection of Algorithm 1 (step 3) and the
diagnostics it reports live here because PROFIT and its lean mode share them.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

#: The ``projection`` arguments of PROFIT and its lean mode.
PROJECTIONS = ("global", "per_tensor")


def acc_dtype(dtype: Any) -> Any:
    """Accumulation dtype: at least float32 (float64 stays float64)."""
    return jnp.promote_types(dtype, jnp.float32)


def to_acc(x: jax.Array) -> jax.Array:
    """``x`` in its accumulation dtype."""
    return x.astype(acc_dtype(x.dtype))


def own_upcasts_on_cpu(fn: Any, *args: Any) -> Any:
    """``fn(*args)``; on CPU with ``args`` read through an ``optimization_barrier`` first.

    XLA:CPU writes an upcast (bf16 → float32) that a reduction shares with another
    reduction or loop to a float32 temporary: for bf16 parameters 4 bytes per parameter
    and upcast, and several times the time of reading the bf16 buffer inside the
    reduction. Behind the barrier the reduction's upcasts are its own and fuse into it.
    Other backends can fuse sibling reductions of one input into one kernel, which the
    barrier would prevent, so there ``fn`` reads ``args`` directly, as before this helper
    existed (``jax.lax.platform_dependent``: decided when the program is lowered).
    """
    through = lambda *a: fn(*jax.lax.optimization_barrier(a))
    return jax.lax.platform_dependent(*args, cpu=through, default=fn)


def sumsq(tree: Any) -> jax.Array:
    """‖tree‖² as a float32 scalar, summed in float32 for every input dtype (float64
    leaves are squared in float64, then summed in float32)."""

    def leaf(x):
        sq = lambda x: jnp.sum(jnp.square(to_acc(x)), dtype=jnp.float32)
        return sq(x) if x.dtype == acc_dtype(x.dtype) else own_upcasts_on_cpu(sq, x)

    return sum((leaf(x) for x in jax.tree.leaves(tree)), jnp.float32(0))


def sumsq_between(a: Any, b: Any) -> jax.Array:
    """‖a − b‖² over two trees as a float32 scalar, accumulated in the accumulation
    dtype (float64 when an input is float64)."""

    def leaf(x, y):
        acc = jnp.promote_types(acc_dtype(x.dtype), acc_dtype(y.dtype))
        sq = lambda x, y: jnp.sum(jnp.square(x.astype(acc) - y.astype(acc)), dtype=acc)
        if x.dtype == acc and y.dtype == acc:
            return sq(x, y)
        return own_upcasts_on_cpu(sq, x, y)

    return sum(jax.tree.leaves(jax.tree.map(leaf, a, b)), jnp.float32(0)).astype(jnp.float32)


def add_rounded(a: Any, b: Any) -> Any:
    """round(a + b) in ``a``'s dtypes, the sum taken in the accumulation dtype."""
    return jax.tree.map(lambda x, y: (to_acc(x) + to_acc(y)).astype(x.dtype), a, b)


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


def zero_diagnostics() -> ProfitDiagnostics:
    """The diagnostics before any main step."""
    # One array per field: shared buffers could not be donated together.
    z = lambda: jnp.zeros((), jnp.float32)
    return ProfitDiagnostics(z(), z(), z(), z(), z(), jnp.zeros((), jnp.int32))


def count_nonfinite(diag: ProfitDiagnostics, finite: jax.Array) -> ProfitDiagnostics:
    """``diag`` with one more skipped call where ``finite`` is False."""
    skipped = jnp.where(finite, 0, 1).astype(jnp.int32)
    return diag._replace(nonfinite_count=diag.nonfinite_count + skipped)


def _leaf_sums(g: jax.Array, delta: tuple[jax.Array, ...]) -> jax.Array:
    """(⟨g, Δ⟩, ‖Δ‖², ‖g‖²) of one leaf in its accumulation dtype, Δ = ``delta[0]`` or
    ``delta[0] − delta[1]`` (never materialised)."""
    acc = functools.reduce(jnp.promote_types, [acc_dtype(x.dtype) for x in (g, *delta)])
    up = lambda x: x.astype(acc)

    def sums(g_delta, delta2, g3):
        # Three reductions, each given its own inputs. The first two spell Δ apart
        # (a − b, b − a), which keeps XLA from merging them into one Δ written out.
        g1, delta1 = g_delta
        if len(delta) == 1:
            d1, d2 = up(delta1[0]), up(delta2[0])
        else:
            d1, d2 = up(delta1[0]) - up(delta1[1]), up(delta2[1]) - up(delta2[0])
        return jnp.stack(
            [jnp.sum(up(g1) * d1), jnp.sum(jnp.square(d2)), jnp.sum(jnp.square(up(g3)))]
        )

    if all(x.dtype == acc for x in (g, *delta)):  # no upcast to share
        return sums((g, delta), delta, g)
    return own_upcasts_on_cpu(sums, (g, delta), delta, g)


def projection_sums(grads: optax.Updates, delta: optax.Updates) -> jax.Array:
    """Per leaf (⟨g, Δ⟩, ‖Δ‖², ‖g‖²), shape ``(n_leaves, 3)``, in float32 (float64
    when an input is float64).

    Three plain ``jnp.sum`` reductions per leaf. A single fused variadic ``lax.reduce``
    would read the inputs once, but XLA:CPU runs it as a serial loop (relative error
    1e-2 at 8e6 float32 elements) and its sharded form gathers per-shard partials; the
    plain sums partition into local partial sums plus one small all-reduce, which XLA
    combines across leaves (``tests/benchmarks/test_collectives.py``). On CPU, half-
    precision inputs reach each reduction through its own ``optimization_barrier`` so
    that no float32 upcast is written to memory (``benchmarks/analysis/update_passes.md``).
    """
    g_leaves, treedef = jax.tree.flatten(grads)
    d_leaves = treedef.flatten_up_to(delta)  # type: ignore[attr-defined]  # no stub for jaxlib's PyTreeDef
    return jnp.stack([_leaf_sums(g, (d,)) for g, d in zip(g_leaves, d_leaves, strict=True)])


def projection_sums_between(
    grads: optax.Updates, new: optax.Params, old: optax.Params
) -> jax.Array:
    """Like :func:`projection_sums` with Δ = ``new`` − ``old``, never materialising Δ
    (each sum subtracts on its own: no Δ written to a temporary buffer, one
    parameter-sized write and read fewer per main call)."""
    g_leaves, treedef = jax.tree.flatten(grads)
    new_leaves, old_leaves = treedef.flatten_up_to(new), treedef.flatten_up_to(old)  # type: ignore[attr-defined]  # no stub for jaxlib's PyTreeDef
    return jnp.stack(
        [_leaf_sums(g, (a, b)) for g, a, b in zip(g_leaves, new_leaves, old_leaves, strict=True)]
    )


def project(
    grads: optax.Updates, delta: optax.Updates, projection: str, sums: jax.Array
) -> tuple[optax.Updates, ProfitDiagnostics]:
    """Projects ``grads`` away from ``delta`` where ⟨g, Δ⟩ < 0 (step 3 of Algorithm 1).

    ``sums`` are the per-leaf (⟨g, Δ⟩, ‖Δ‖², ‖g‖²) of :func:`projection_sums`;
    ``projection`` is one of :data:`PROJECTIONS`. Returns the projected gradient
    (computed in the accumulation dtype, rounded to the gradients' dtypes) and the
    diagnostics (float32, ``nonfinite_count`` left at 0).
    """
    g_leaves, treedef = jax.tree.flatten(grads)
    d_leaves = treedef.flatten_up_to(delta)  # type: ignore[attr-defined]  # no stub for jaxlib's PyTreeDef
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
        (to_acc(g) - coefs[i].astype(acc_dtype(g.dtype)) * to_acc(d)).astype(g.dtype)
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
