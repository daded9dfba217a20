"""PROFIT across 2 processes (jax.distributed, gloo CPU collectives), 2 CPU devices each.

Starts two ``tests/library/_mp_worker.py`` processes on this machine that join through a
coordinator on a free local port, shard the parameters across both processes
(1-D FSDP mesh; 2-D ``data`` × ``model`` mesh), train PROFIT for three cycles,
save and restore an Orbax checkpoint mid-cycle and continue from it. The
results must equal a single-process, single-device run. The processes are
killed (whole process group) whatever happens.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests._procs import free_port, kill_all, wait_all
from tests.library import _sharded_training as st
from tests.library.test_sharding import subprocess_env

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "library" / "_mp_worker.py"
NUM_PROCESSES = 2
TIMEOUT_S = 55


def single_device_reference(tx_name: str, n_steps: int) -> dict[str, np.ndarray]:
    run = st.Run(tx_name)
    params, state = run.init(st.init_mlp(0))
    params, state = run.train(params, state, st.make_batches(9)[:n_steps])
    return {
        **st.flat_with_paths(st.to_host(params), "params"),
        **st.flat_with_paths(st.to_host(state), "state"),
    }


def leaves(arrays, tag: str) -> dict[str, np.ndarray]:
    return {k.split("|", 1)[1]: v for k, v in arrays.items() if k.startswith(tag + "|")}


@pytest.mark.multidevice
@pytest.mark.slow
@pytest.mark.numerics
def test_profit_across_processes_matches_single_device(tmp_path):
    env = subprocess_env(1)  # the worker sets its own device count
    port = free_port()
    procs, logs = [], []
    start = time.monotonic()
    try:
        for i in range(NUM_PROCESSES):
            log = open(tmp_path / f"log_{i}.txt", "w")
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(WORKER),
                        f"--process-id={i}",
                        f"--num-processes={NUM_PROCESSES}",
                        f"--port={port}",
                        f"--out={tmp_path}",
                    ],
                    env=env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: killed as a whole below
                )
            )
        # The reference runs here while the workers start up.
        refs = {
            "fsdp": single_device_reference("profit_nref1", 6),
            "2d": single_device_reference("profit_nref2", 9),
        }
        wait_all(procs, start, TIMEOUT_S)
    finally:
        kill_all(procs, logs)
    outputs = [(tmp_path / f"log_{i}.txt").read_text()[-4000:] for i in range(NUM_PROCESSES)]
    assert [p.returncode for p in procs] == [0] * NUM_PROCESSES, "\n\n".join(outputs)

    results = []
    for i in range(NUM_PROCESSES):
        with np.load(tmp_path / f"process_{i}.npz") as f:
            results.append(dict(f))
    # Every process sees the same global values.
    assert results[0].keys() == results[1].keys()
    for k in results[0]:
        np.testing.assert_array_equal(results[0][k], results[1][k], err_msg=k)

    got = results[0]
    # Restored mid-cycle and continued: bit-identical to the uninterrupted run.
    fsdp, restored = leaves(got, "fsdp"), leaves(got, "fsdp_restored")
    assert fsdp.keys() == restored.keys()
    for k in fsdp:
        np.testing.assert_array_equal(fsdp[k], restored[k], err_msg=k)
    # And equal to one device.
    for tag in ("fsdp", "2d"):
        mine = leaves(got, tag)
        assert mine.keys() == refs[tag].keys() and len(mine) > 10
        for k, want in refs[tag].items():
            np.testing.assert_allclose(mine[k], want, rtol=1e-3, atol=1e-4, err_msg=f"{tag} {k}")
        assert mine["state.count"] == 0
