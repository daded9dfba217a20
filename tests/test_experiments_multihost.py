"""The MLP transfer pipeline across 2 processes equals a single-process run.

Starts ``python -m experiments.mlp.main`` twice on this machine (through this
file's ``__main__``, which only adds TFDS mock data), joined by
``jax.distributed`` through an explicit coordinator on a free local port, with
gloo CPU collectives and ``LOCAL_DEVICES`` simulated CPU devices per process:
data parallel over a mesh of all their devices, each process feeding its own
rows of every batch. The quick
config (pretraining, Adam and PROFIT fine-tuning, 2 seeds) must give the results
of the same config run in one process, and only process 0 may write results or
log. The processes are killed (whole process group) whatever happens.

    python -m tests.test_experiments_multihost --workdir DIR [flags of experiments.mlp.main]
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests._procs import kill_all, wait_all

ROOT = Path(__file__).resolve().parent.parent
NUM_PROCESSES = 2
LOCAL_DEVICES = 1
TIMEOUT_S = 120
MOCK_EXAMPLES = 100
CONFIG = "experiments/mlp/configs/fashion_mnist_offline.py"
CONFIG_FLAGS = ["--config.quick=True", "--config.finetune.only=adam,profit"]
WRITES_LOG = "writes_{}.txt"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


def mock_config():
    from experiments.mlp.configs import fashion_mnist_offline

    config = fashion_mnist_offline.get_config()
    config.quick = True
    config.finetune.only = "adam,profit"
    return config


def run_worker(argv: list[str]) -> None:
    """``experiments.mlp.main`` on TFDS mock data; records which files this process writes."""
    import tensorflow_datasets as tfds
    from absl import app

    from experiments.common import data, plotting, results
    from experiments.mlp import main as mlp_main

    data.DATASET_PREPARERS.pop("fashion_mnist", None)  # mock data needs no preparation
    workdir = next(a.split("=", 1)[1] for a in argv if a.startswith("--workdir="))
    process_id = next((a.split("=", 1)[1] for a in argv if a.startswith("--process_id=")), "0")
    log = Path(workdir).parent / WRITES_LOG.format(process_id)

    def recording(module, name):
        original = getattr(module, name)

        def wrapper(*args, **kwargs):
            with open(log, "a") as f:
                f.write(f"{name}\n")
            return original(*args, **kwargs)

        setattr(module, name, wrapper)

    for name in ("write_json", "write_table"):
        recording(results, name)
    for name in ("plot_tradeoff", "plot_learning_curves"):
        recording(plotting, name)
    with tfds.testing.mock_data(num_examples=MOCK_EXAMPLES):
        app.run(mlp_main.main, argv=[sys.argv[0], *argv])


def read_runs(workdir: Path) -> dict[str, dict]:
    return {
        str(p.relative_to(workdir)): json.loads(p.read_text())
        for p in sorted(workdir.glob("finetune/*/seed_*.json"))
    }


def assert_same_history(got: list[dict], want: list[dict], what: str) -> None:
    assert [h["step"] for h in got] == [h["step"] for h in want], what
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys(), what
        for k in w:
            if k.endswith("acc") or k.endswith("accuracy"):
                np.testing.assert_allclose(g[k], w[k], atol=1e-6, err_msg=f"{what} {k}")
            else:
                np.testing.assert_allclose(g[k], w[k], rtol=2e-4, atol=1e-5, err_msg=f"{what} {k}")


@pytest.mark.multidevice
@pytest.mark.slow
def test_mlp_pipeline_across_processes_matches_single_process(tmp_path):
    import tensorflow_datasets as tfds

    from experiments.common import data, transfer
    from experiments.mlp.main import build_model

    multi, single = tmp_path / "multi" / "workdir", tmp_path / "single"
    multi.parent.mkdir()
    port = free_port()
    procs, logs = [], []
    start = time.monotonic()
    try:
        for i in range(NUM_PROCESSES):
            log = open(multi.parent / f"log_{i}.txt", "w")
            logs.append(log)
            procs.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "tests.test_experiments_multihost",
                        f"--config={CONFIG}",
                        *CONFIG_FLAGS,
                        f"--workdir={multi}",
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
                rows = transfer.run_transfer(mock_config(), build_model, single, progress=False)
        finally:
            if preparer is not None:
                data.DATASET_PREPARERS["fashion_mnist"] = preparer
        wait_all(procs, start, TIMEOUT_S)
    finally:
        kill_all(procs, logs)
    outputs = [(multi.parent / f"log_{i}.txt").read_text() for i in range(NUM_PROCESSES)]
    assert [p.returncode for p in procs] == [0] * NUM_PROCESSES, "\n\n".join(
        o[-4000:] for o in outputs
    )

    # It really ran on 2 processes x 2 devices, and only process 0 logged and wrote files.
    assert (
        f"process 0 of 2, {LOCAL_DEVICES} local / {2 * LOCAL_DEVICES} global devices" in outputs[0]
    ), outputs[0][-3000:]
    assert "Data loaded" in outputs[0] and "| adam | 2 |" in outputs[0]
    assert "Data loaded" not in outputs[1] and "| adam |" not in outputs[1], outputs[1][-3000:]
    writes = multi.parent / WRITES_LOG.format(0)
    assert {"write_json", "write_table", "plot_tradeoff"} <= set(writes.read_text().split())
    assert not (multi.parent / WRITES_LOG.format(1)).exists()

    # The same outputs as one process, to float tolerance.
    got_rows = json.loads((multi / "results.json").read_text())
    want_rows = json.loads((single / "results.json").read_text())
    assert [r["label"] for r in got_rows] == [r["label"] for r in want_rows]
    assert [r["label"] for r in want_rows][1:] == [r["label"] for r in rows] == ["adam", "profit"]
    for g, w in zip(got_rows, want_rows, strict=True):
        for k in ("old_acc_mean", "new_acc_mean", "mean_acc_mean", "old_acc_se", "new_acc_se"):
            nan = lambda v: np.nan if v is None else v  # NaN is written as null
            np.testing.assert_allclose(nan(g[k]), nan(w[k]), atol=1e-6, err_msg=f"{w['label']} {k}")
    pre = [json.loads((d / "pretrain" / "pretrain.json").read_text()) for d in (multi, single)]
    assert pre[0]["fingerprint"] == pre[1]["fingerprint"]
    assert_same_history(pre[0]["history"], pre[1]["history"], "pretrain")
    got_runs, want_runs = read_runs(multi), read_runs(single)
    assert got_runs.keys() == want_runs.keys() and len(want_runs) == 4
    for name, want in want_runs.items():
        got = got_runs[name]
        assert got["fingerprint"] == want["fingerprint"], name
        assert_same_history(got["history"], want["history"], name)
    assert (multi / "pretrain" / "checkpoint").is_dir()
    for png in ("old_vs_new.png", "learning_curves.png", "pretrain_curve.png"):
        assert (multi / "plots" / png).is_file()


if __name__ == "__main__":
    run_worker(sys.argv[1:])
