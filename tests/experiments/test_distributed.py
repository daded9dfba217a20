"""experiments/common/distributed.py without several hosts: start-up decisions, batch rows.

The multi-process path itself (``global_batch`` with process-local rows) runs in
tests/library/test_multiprocess.py.
"""

from __future__ import annotations

import types

import jax
import numpy as np
import pytest
from absl import flags

from experiments.common import distributed as dist


def fake_mesh(process_of: list[list[int]], axis_names=("data", "model")):
    devices = np.empty((len(process_of), len(process_of[0])), dtype=object)
    for i, row in enumerate(process_of):
        for j, p in enumerate(row):
            devices[i, j] = types.SimpleNamespace(process_index=p, id=10 * i + j)
    return types.SimpleNamespace(devices=devices, axis_names=axis_names)


# jax.make_mesh order for 2 processes × 2 devices: the first axis spans processes.
MESH_2x2 = fake_mesh([[0, 0], [1, 1]])


@pytest.mark.parametrize(
    ("axes", "rows"),
    [
        (("data", "model"), [slice(0, 8), slice(8, 16)]),
        ("data", [slice(0, 8), slice(8, 16)]),
        ("model", [slice(0, 16), slice(0, 16)]),  # model axis is inside each process
        (None, [slice(0, 16), slice(0, 16)]),  # replicated batch
    ],
)
def test_process_batch_rows(axes, rows):
    assert [dist.process_batch_rows(MESH_2x2, axes, 16, p) for p in (0, 1)] == rows


def test_process_batch_rows_over_a_process_spanning_minor_axis():
    mesh = fake_mesh([[0, 1], [2, 3]])  # 4 processes, one device each
    got = [dist.process_batch_rows(mesh, ("data", "model"), 8, p) for p in range(4)]
    assert got == [slice(0, 2), slice(2, 4), slice(4, 6), slice(6, 8)]
    # Batch over "model" only: processes 0 and 2 hold the same rows (replicated over data).
    assert dist.process_batch_rows(mesh, "model", 8, 2) == slice(0, 4)


def test_process_batch_rows_errors():
    with pytest.raises(ValueError, match="not contiguous"):
        dist.process_batch_rows(fake_mesh([[0, 1], [0, 1]]), ("data", "model"), 8, 0)
    with pytest.raises(ValueError, match="does not split"):
        dist.process_batch_rows(MESH_2x2, ("data", "model"), 6, 0)
    with pytest.raises(ValueError, match="not a mesh axis"):
        dist.process_batch_rows(MESH_2x2, "batch", 8, 0)
    with pytest.raises(ValueError, match="holds no device"):
        dist.process_batch_rows(MESH_2x2, "data", 8, 5)


def test_rows_and_global_batch_on_a_real_mesh():
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    assert dist.process_batch_rows(mesh, "data", 8) == slice(0, 8)  # one process: all rows
    batch = {"x": np.arange(16.0).reshape(8, 2), "y": np.arange(8)}
    out = dist.global_batch(batch, mesh, "data", 8)
    np.testing.assert_array_equal(np.asarray(out["x"]), batch["x"])
    assert out["y"].sharding.spec == jax.sharding.PartitionSpec(("data",))


SLURM_4 = {
    "SLURM_JOB_ID": "7",
    "SLURM_STEP_NODELIST": "n[1-4]",
    "SLURM_NTASKS": "4",
    "SLURM_PROCID": "0",
}


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({}, None),
        ({"JAX_COORDINATOR_ADDRESS": "h:1"}, "jax"),
        (SLURM_4, "slurm"),
        ({**SLURM_4, "SLURM_NTASKS": "1"}, None),  # a one-task allocation is one process
        ({"OMPI_MCA_orte_hnp_uri": "x", "OMPI_COMM_WORLD_SIZE": "2"}, "openmpi"),
    ],
)
def test_detected_cluster(env, name):
    assert dist.detected_cluster(env) == name


def test_should_initialize():
    cfg = dist.DistributedConfig
    assert not dist.should_initialize(cfg(), {})
    assert dist.should_initialize(cfg(), SLURM_4)
    assert dist.should_initialize(cfg(coordinator_address="h:1", num_processes=2, process_id=0), {})
    assert not dist.should_initialize(cfg(num_processes=1), SLURM_4)
    assert not dist.should_initialize(cfg(mode="off", num_processes=2), SLURM_4)
    assert dist.should_initialize(cfg(mode="on"), {})
    with pytest.raises(ValueError, match="process_id"):
        cfg(num_processes=2, process_id=2)
    with pytest.raises(ValueError, match="mode"):
        cfg(mode="yes")


def test_flags_round_trip():
    fv = flags.FlagValues()
    dist.define_flags(fv)
    dist.define_flags(fv)  # idempotent
    fv(
        [
            "prog",
            "--coordinator_address=host0:1234",
            "--num_processes=4",
            "--process_id=3",
            "--local_device_ids=0,1",
        ]
    )
    assert dist.config_from_flags(fv) == dist.DistributedConfig(
        coordinator_address="host0:1234", num_processes=4, process_id=3, local_device_ids=(0, 1)
    )


def test_initialize_passes_only_given_settings(monkeypatch):
    calls = []
    monkeypatch.setattr(jax.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    assert dist.initialize(dist.DistributedConfig(mode="off"), {}) is False
    assert dist.initialize(dist.DistributedConfig(), {}) is False
    assert calls == []
    dist.initialize(dist.DistributedConfig(coordinator_address="h:1", num_processes=2), {})
    assert calls == [
        {"initialization_timeout": 300, "coordinator_address": "h:1", "num_processes": 2}
    ]
    dist.initialize(dist.DistributedConfig(mode="on"), {})  # auto-detection by jax
    assert calls[-1] == {"initialization_timeout": 300}
