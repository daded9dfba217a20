"""The compiled update's cost does not grow: parameter-sized passes per phase, pinned.

Load-independent figures of the donated ``update + apply_updates`` step, read off the
compiled HLO by ``benchmarks.update_cost.phase_analysis`` (the "Compiled donated program"
table of ``benchmarks/RESULTS.md``) on a transformer-like float32 tree of 1e6 parameters.
The bounds are the figures measured on 2026-11-26 (jax/jaxlib 0.10.2 on CPU); a change
that adds a pass fails here. A new XLA may fuse differently: re-measure before moving a
bound.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from benchmarks import _common as C
from benchmarks import update_cost as U

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
}


@pytest.fixture(scope="module")
def analysis():
    params = C.transformer_like_params(1e6, jnp.float32, depth=4)
    grads = jax.tree.map(lambda p: 1e-3 * jnp.cos(p), params)
    return {s.name: U.phase_analysis(s, params, grads) for s in U.method_specs(list(BOUNDS))}


@pytest.mark.parametrize("method", list(BOUNDS))
def test_passes_per_phase_do_not_grow(analysis, method):
    phases = analysis[method]["phases"]
    assert set(phases) == set(BOUNDS[method])
    for label, (reads, writes, copies) in BOUNDS[method].items():
        got = phases[label]
        measured = (got["read_passes"], got["write_passes"], got["param_sized_copies"])
        assert measured[0] <= reads and measured[1] <= writes, (label, measured)
        assert measured[2] <= copies, (label, measured)
    if method == "adam":  # the counter itself: bare Adam's known 7R 3W
        assert (phases["all"]["read_passes"], phases["all"]["write_passes"]) == (7, 3)
