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


def sumsq(tree: Any) -> jax.Array:
    """‖tree‖² as a float32 scalar, summed in float32 for every input dtype (float64
    leaves are squared in float64, then summed in float32)."""
    leaves = jax.tree.leaves(tree)
    return sum((jnp.sum(jnp.square(to_acc(x)), dtype=jnp.float32) for x in leaves), jnp.float32(0))


def sumsq_between(a: Any, b: Any) -> jax.Array:
    """‖a − b‖² over two trees as a float32 scalar, accumulated in the accumulation
    dtype (float64 when an input is float64)."""

    def leaf(x, y):
        acc = jnp.promote_types(acc_dtype(x.dtype), acc_dtype(y.dtype))
        return jnp.sum(jnp.square(x.astype(acc) - y.astype(acc)), dtype=acc)

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


def projection_sums(grads: optax.Updates, delta: optax.Updates) -> jax.Array:
    """Per leaf (⟨g, Δ⟩, ‖Δ‖², ‖g‖²), shape ``(n_leaves, 3)``, in float32 (float64
    when an input is float64).

    Three plain ``jnp.sum`` reductions. A single fused variadic ``lax.reduce``
    reads g and Δ's inputs once instead of up to seven times on one CPU device,
    but it is not sharding-friendly: under explicit mesh axes its reshape does not
    trace, and under automatic axes XLA all-gathers Δ to compute it. The plain
    sums partition into local partial sums plus one small all-reduce, which XLA
    combines across leaves (``tests/benchmarks/test_collectives.py``).
    """

    def sums(g, d):
        acc = jnp.promote_types(acc_dtype(g.dtype), acc_dtype(d.dtype))
        g, d = g.astype(acc), d.astype(acc)
        return jnp.stack([jnp.sum(g * d), jnp.sum(d * d), jnp.sum(g * g)])

    g_leaves, treedef = jax.tree.flatten(grads)
    d_leaves = treedef.flatten_up_to(delta)  # type: ignore[attr-defined]  # no stub for jaxlib's PyTreeDef
    return jnp.stack([sums(g, d) for g, d in zip(g_leaves, d_leaves, strict=True)])


def projection_sums_between(
    grads: optax.Updates, new: optax.Params, old: optax.Params
) -> jax.Array:
    """Like :func:`projection_sums` with Δ = ``new`` − ``old``, never materialising Δ.

    Each sum subtracts on its own (the two spellings keep XLA from merging them into
    one Δ written to a temporary buffer: one parameter-sized write and read fewer per
    main call, and no float32 Δ temporary in the step's memory).
    """

    def sums(g, a, b):
        acc = jnp.promote_types(jnp.promote_types(acc_dtype(g.dtype), a.dtype), b.dtype)
        g, a, b = g.astype(acc), a.astype(acc), b.astype(acc)
        return jnp.stack([jnp.sum(g * (a - b)), jnp.sum(jnp.square(b - a)), jnp.sum(g * g)])

    g_leaves, treedef = jax.tree.flatten(grads)
    new_leaves, old_leaves = treedef.flatten_up_to(new), treedef.flatten_up_to(old)  # type: ignore[attr-defined]  # no stub for jaxlib's PyTreeDef
    return jnp.stack(
        [sums(g, a, b) for g, a, b in zip(g_leaves, new_leaves, old_leaves, strict=True)]
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
