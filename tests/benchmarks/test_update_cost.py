"""The compiled update's cost does not grow: parameter-sized passes per phase, pinned.

Load-independent figures of the donated ``update + apply_updates`` step, read off the
compiled HLO by ``benchmarks.update_cost.phase_analysis`` (the "Compiled donated program"
table of ``benchmarks/RESULTS.md``) on a transformer-like tree of 1e6 parameters. The
bounds are the figures measured on 2026-12-03 (jax/jaxlib 0.10.2 on CPU; the pass-by-pass
account of each phase is in ``benchmarks/analysis/update_passes.md``); a change that adds
a pass fails here, and :func:`test_a_worse_program_fails_the_bounds` checks that it does.
A new XLA may fuse differently: re-measure before moving a bound.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from benchmarks import _common as C
from benchmarks import update_cost as U
from profit_optax._src import numerics
from profit_optax._src import profit as profit_module
from profit_optax._src.numerics import acc_dtype

# (reads, writes, copies executed), in passes over the parameters, per phase.
BOUNDS = {
    "adam": {"all": (7, 3, 0)},
    "profit_sgd_n1": {"ref (first, saves θ_ref)": (5, 2, 16), "main": (20, 4, 0)},
    "profit_sgd_n3": {
        "ref (first, saves θ_ref)": (5, 2, 16),
        "ref (middle)": (4, 1, 0),
        "main": (20, 4, 0),
    },
    "profit_auto_n1": {"ref (first, saves θ_ref)": (5, 2, 16), "main": (22, 4, 0)},
    # the main step's output u (for ‖u‖ and the update) and the old first moment (the
    # main step overwrites it in place) are the two temporaries; see profit_lean.
    "profit_lean": {"all": (18, 5, 16)},
}
# bfloat16 parameters: on CPU each reduction reads its bf16 inputs through a barrier of its
# own (numerics.own_upcasts_on_cpu); shared, the float32 upcasts are written out (22R 8W and
# 25R 9W, 12 bytes of temporaries per parameter; see update_passes.md).
BOUNDS_BF16 = {
    "profit_sgd_n1": {"ref (first, saves θ_ref)": (5, 2, 16), "main": (19, 5, 0)},
    "profit_auto_n1": {"ref (first, saves θ_ref)": (5, 2, 16), "main": (21, 5, 0)},
    "profit_lean": {"all": (19, 6, 16)},
}
#: Parameter-sized temporaries per parameter, bytes (the compiled memory analysis).
TEMP_BF16 = {"profit_sgd_n1": 2.1, "profit_auto_n1": 2.1, "profit_lean": 4.1}


def _analyse(names, dtype):
    params = C.transformer_like_params(1e6, dtype, depth=4)
    grads = jax.tree.map(lambda p: (1e-3 * jnp.cos(p.astype(jnp.float32))).astype(dtype), params)
    return {s.name: U.phase_analysis(s, params, grads) for s in U.method_specs(list(names))}


def _violations(phases, bounds):
    """The phases whose measured (reads, writes, copies) exceed their bounds."""
    out = []
    for label, bound in bounds.items():
        got = phases[label]
        measured = (got["read_passes"], got["write_passes"], got["param_sized_copies"])
        if any(m > b for m, b in zip(measured, bound, strict=True)):
            out.append((label, measured, bound))
    return out


@pytest.fixture(scope="module")
def analysis():
    return _analyse(BOUNDS, jnp.float32)


@pytest.mark.parametrize("method", list(BOUNDS))
def test_passes_per_phase_do_not_grow(analysis, method):
    phases = analysis[method]["phases"]
    assert set(phases) == set(BOUNDS[method])
    assert not _violations(phases, BOUNDS[method])
    if method == "adam":  # the counter itself: bare Adam's known 7R 3W
        assert (phases["all"]["read_passes"], phases["all"]["write_passes"]) == (7, 3)


def _temp_per_param(result) -> float:
    return result["generic"]["memory_analysis"]["temp_size_in_bytes"] / result["n_params"]


def test_passes_per_phase_do_not_grow_in_bfloat16(monkeypatch):
    analysis = _analyse(BOUNDS_BF16, jnp.bfloat16)
    for method, bounds in BOUNDS_BF16.items():
        assert not _violations(analysis[method]["phases"], bounds), method
        assert _temp_per_param(analysis[method]) <= TEMP_BF16[method], method
    # Without the barriers (every reduction reading the shared upcasts) both bounds fail.
    monkeypatch.setattr(numerics, "own_upcasts_on_cpu", lambda fn, *args: fn(*args))
    shared = _analyse(["profit_sgd_n1", "profit_lean"], jnp.bfloat16)
    phases = shared["profit_sgd_n1"]["phases"]
    assert [v[0] for v in _violations(phases, BOUNDS_BF16["profit_sgd_n1"])] == ["main"]
    assert _temp_per_param(shared["profit_sgd_n1"]) > 4 * TEMP_BF16["profit_sgd_n1"]
    assert _violations(shared["profit_lean"]["phases"], BOUNDS_BF16["profit_lean"])
    assert _temp_per_param(shared["profit_lean"]) > 2 * TEMP_BF16["profit_lean"]


def test_a_worse_program_fails_the_bounds(monkeypatch):
    """The bounds are tight: Δ = θ' − θ_ref formed once for the three projection sums (the
    spelling before 42912e9) is written to a parameter-sized buffer and read back."""

    def sums_with_shared_delta(grads, new, old):
        def sums(g, a, b):
            acc = jnp.promote_types(acc_dtype(g.dtype), a.dtype)
            g, d = g.astype(acc), a.astype(acc) - b.astype(acc)
            return jnp.stack([jnp.sum(g * d), jnp.sum(d * d), jnp.sum(g * g)])

        return jnp.stack(
            [sums(*x) for x in zip(*(jax.tree.leaves(t) for t in (grads, new, old)), strict=True)]
        )

    monkeypatch.setattr(profit_module, "projection_sums_between", sums_with_shared_delta)
    worse = _analyse(["profit_sgd_n1"], jnp.float32)["profit_sgd_n1"]["phases"]
    assert [v[0] for v in _violations(worse, BOUNDS["profit_sgd_n1"])] == ["main"]
