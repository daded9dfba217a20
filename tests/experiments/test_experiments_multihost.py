"""A suite across 2 processes equals the same suite in one process.

Starts ``python -m experiments.recipe`` twice on this machine (through this file's
``__main__``, which only adds TFDS mock data), joined by ``jax.distributed`` through the
suite command line's ``--coordinator_address/--num_processes/--process_id`` on a free
local port, with gloo CPU collectives and ``LOCAL_DEVICES`` simulated CPU devices per
process: every run data parallel over a mesh of all their devices, each process feeding
its own rows of every batch. The quick recipe (pretraining, tuning Adam, PROFIT and
head-only on validation, reporting seeds, the comparison) must give the run records of
the same suite run in one process, and only process 0 may write records or outputs. The
processes are killed (whole process group) whatever happens.

    python -m tests.experiments.test_experiments_multihost [flags of python -m experiments.recipe]

This file is also the suite's config file (:func:`get_config`).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests._procs import free_port, kill_all, wait_all

ROOT = Path(__file__).resolve().parents[2]
NUM_PROCESSES = 2
LOCAL_DEVICES = 1
TIMEOUT_S = 600
MOCK_EXAMPLES = 120
WRITES_LOG = "writes_{}.txt"


def get_config():
    """The quick recipe on TFDS mock data, without its ablations (fewer runs)."""
    from experiments.recipe import config

    cfg = config.get_config("quick")
    cfg.num_val = 8
    cfg.old_task.max_train_examples = None
    cfg.new_task.max_train_examples = None
    cfg.ablation.update({"ratios": (), "n_refs": ()})
    cfg.n_ref_grid = ()
    return cfg


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
    env["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={LOCAL_DEVICES}"])
    env["JAX_PLATFORMS"] = "cpu"
    env["JAX_CPU_COLLECTIVES_IMPLEMENTATION"] = "gloo"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    for var in ("JAX_COORDINATOR_ADDRESS", "SLURM_JOB_ID", "OMPI_MCA_orte_hnp_uri"):
        env.pop(var, None)  # no launcher auto-detection: the flags say everything
    return env


def run_worker(argv: list[str]) -> None:
    """``python -m experiments.recipe`` on TFDS mock data; records which files it writes."""
    import tensorflow_datasets as tfds

    from experiments.common import data, results
    from experiments.recipe import main

    data.DATASET_PREPARERS.pop("fashion_mnist", None)  # mock data needs no preparation
    out = next(a.split("=", 1)[1] for a in argv if a.startswith("--out="))
    process_id = next((a.split("=", 1)[1] for a in argv if a.startswith("--process_id=")), "0")
    log = Path(out).parent / WRITES_LOG.format(process_id)
    for name in ("write_json", "write_text_atomic"):
        original = getattr(results, name)

        def wrapper(path, *args, _original=original, **kwargs):
            with open(log, "a") as f:
                f.write(f"{path}\n")
            return _original(path, *args, **kwargs)

        setattr(results, name, wrapper)
    sys.argv = [sys.argv[0], *argv]
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        main.main()


def records(cache: Path) -> dict[str, dict]:
    return {p.name: json.loads(p.read_text()) for p in sorted(cache.glob("*/*.json"))}


def assert_close(got, want, what: str) -> None:
    """Equal structure; accuracies to 1e-6, losses and diagnostics to float tolerance,
    timings ignored."""
    if isinstance(want, dict):
        assert got.keys() == want.keys(), what
        for k in want:
            if not k.endswith("time_s"):
                assert_close(got[k], want[k], f"{what}.{k}")
    elif isinstance(want, list):
        assert len(got) == len(want), what
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_close(g, w, f"{what}[{i}]")
    elif isinstance(want, float):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-5, err_msg=what)
    else:
        assert got == want, what


@pytest.mark.multidevice
@pytest.mark.slow
def test_suite_across_processes_matches_single_process(tmp_path):
    import tensorflow_datasets as tfds

    from experiments.common import data, protocol
    from experiments.common import suite as framework
    from experiments.common.cache import RunCache
    from experiments.recipe import suite

    multi, single = tmp_path / "multi", tmp_path / "single"
    multi.mkdir()
    port = free_port()
    procs, logs = [], []
    start = time.monotonic()
    try:
        for i in range(NUM_PROCESSES):
            log = open(multi / f"log_{i}.txt", "w")
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.experiments.test_experiments_multihost",
                        "--config=tests/experiments/test_experiments_multihost.py",
                        f"--workdir={multi / 'cache'}",
                        f"--out={multi / 'out'}",
                        f"--coordinator_address=127.0.0.1:{port}",
                        f"--num_processes={NUM_PROCESSES}",
                        f"--process_id={i}",
                    ],
                    env=worker_env(),
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: killed as a whole below
                )
            )
        # The single-process reference runs here while the workers work.
        preparer = data.DATASET_PREPARERS.pop("fashion_mnist", None)
        try:
            with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
                runner = protocol.Runner(RunCache(single))
                res = framework.run(suite.Suite(get_config(), runner))
        finally:
            if preparer is not None:
                data.DATASET_PREPARERS["fashion_mnist"] = preparer
        wait_all(procs, start, TIMEOUT_S)
    finally:
        kill_all(procs, logs)
    outputs = [(multi / f"log_{i}.txt").read_text() for i in range(NUM_PROCESSES)]
    assert [p.returncode for p in procs] == [0] * NUM_PROCESSES, "\n\n".join(
        o[-4000:] for o in outputs
    )

    # It really ran on 2 processes, and only process 0 wrote records and outputs.
    assert f"process 0 of 2, {LOCAL_DEVICES} local / {2 * LOCAL_DEVICES} global" in outputs[0]
    assert "PROFIT against the best baseline" in outputs[0]  # the page, printed by process 0
    assert "PROFIT against the best baseline" not in outputs[1], outputs[1][-3000:]
    written = (multi / WRITES_LOG.format(0)).read_text().split()
    assert any(p.endswith("results.json") for p in written), written
    assert any("cache" in p for p in written), written
    assert not (multi / WRITES_LOG.format(1)).exists()

    # The same run records as one process (every pretraining and fine-tuning job), and the
    # same results.
    got, want = records(multi / "cache"), records(single)
    assert got.keys() == want.keys() and len(want) > 10
    for name, record in want.items():
        assert_close(got[name], record, name)
    saved = json.loads((multi / "out" / "results.json").read_text())
    assert saved["best_baseline"] == res["best_baseline"]
    assert_close(saved["comparisons"], json.loads(json.dumps(res["comparisons"])), "comparisons")
    for png in ("tradeoff.png", "curves.png", "pretrain.png"):
        assert (multi / "out" / png).is_file()


if __name__ == "__main__":
    run_worker(sys.argv[1:])
