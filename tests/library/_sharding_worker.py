"""Subprocess of tests/library/test_sharding.py: PROFIT on 8 simulated CPU devices, one process.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 \
        python tests/library/_sharding_worker.py OUT_DIR [RUN ...]

A RUN is ``AXIS_TYPE:LAYOUT:TX`` (e.g. ``Explicit:fsdp:profit_nref1``) or ``single:TX``
for the single-device reference. For every run it trains ``3 * period`` steps (three
PROFIT cycles) and writes, into OUT_DIR, ``arrays.npz`` (every leaf of the final
params and optimizer state, keyed ``RUN|path``) and ``meta.json`` (per run: per-step
loss, conflict and cos(g, Δ), leaves whose sharding differs from the parameters', seconds; or
the error that run raised).
The parent test compares the arrays with the single-device run and asserts.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import jax
import numpy as np
from jax.sharding import AxisType

from tests.library import _sharded_training as st


def run_one(spec: str, params_np, batches) -> tuple[dict, dict]:
    parts = spec.split(":")
    t0 = time.perf_counter()
    if parts[0] == "single":
        run = st.Run(parts[1], mesh=None)
    else:
        axis_type, layout, tx_name = parts
        mesh = st.make_layout_mesh(layout, AxisType[axis_type])
        run = st.Run(tx_name, mesh=mesh, layout=layout)
    n_steps = 3 * st.PERIODS[run.tx_name]
    record: list = []
    with run.mesh_context():
        params, state = run.init(params_np)
        params, state = run.train(params, state, batches[:n_steps], record)
        mismatches = (
            [] if run.mesh is None else st.sharding_mismatches(run, params, state, params_np)
        )
    arrays = {
        **st.flat_with_paths(st.to_host(params), f"{spec}|params"),
        **st.flat_with_paths(st.to_host(state), f"{spec}|state"),
    }
    meta = {
        "losses": [r[0] for r in record],
        "conflicts": [r[1] for r in record],
        "cos": [r[2] for r in record],
        "sharding_mismatches": mismatches,
        "seconds": time.perf_counter() - t0,
    }
    return arrays, meta


def main(out_dir: str, specs: list[str]) -> None:
    assert jax.device_count() == 8, jax.devices()
    params_np = st.init_mlp(0)
    batches = st.make_batches(9)
    arrays, meta = {}, {"devices": jax.device_count(), "runs": {}}
    for spec in specs:
        try:
            a, m = run_one(spec, params_np, batches)
        except Exception as e:  # recorded per run: the parent test of that run fails with it
            traceback.print_exc()
            meta["runs"][spec] = {"error": f"{type(e).__name__}: {e}"[:2000]}
            continue
        arrays.update(a)
        meta["runs"][spec] = m
    np.savez(os.path.join(out_dir, "arrays.npz"), **arrays)
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
