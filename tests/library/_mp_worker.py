"""One process of tests/library/test_multiprocess.py: PROFIT sharded across processes.

    python tests/library/_mp_worker.py --process-id I --num-processes N --port P --out DIR

Each process has ``--local-devices`` simulated CPU devices (XLA flag, set here
before jax starts) and joins the others through ``jax.distributed`` with gloo
CPU collectives. It trains PROFIT on

* a 1-D FSDP mesh over all devices of all processes (Explicit axes), with an
  Orbax checkpoint saved by every process after a reference call (mid-cycle),
  restored into fresh arrays, and training continued from it;
* a 2-D ``data`` × ``model`` mesh (Auto axes) whose parameters are sharded over
  both axes (so across processes too), each process loading only its own rows
  of every batch (``experiments.common.distributed``).

It writes ``DIR/process_I.npz``: every leaf of the final params and optimizer
state of each run, gathered to the host.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--process-id", type=int, required=True)
    p.add_argument("--num-processes", type=int, required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--local-devices", type=int, default=2)
    return p.parse_args()


def main() -> None:
    args = parse_args()
    flags = [f for f in os.environ.get("XLA_FLAGS", "").split() if "device_count" not in f]
    flags.append(f"--xla_force_host_platform_device_count={args.local_devices}")
    os.environ["XLA_FLAGS"] = " ".join(flags)
    os.environ["JAX_PLATFORMS"] = "cpu"
    sys.path.insert(0, ROOT)

    import jax

    # Cross-process CPU collectives (the default in recent jax; explicit so that an
    # older default of "none" fails loudly here rather than hang).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{args.port}",
        num_processes=args.num_processes,
        process_id=args.process_id,
        initialization_timeout=30,
    )
    assert jax.process_count() == args.num_processes
    assert jax.device_count() == args.num_processes * args.local_devices, jax.devices()

    import numpy as np
    import orbax.checkpoint as ocp
    from jax.sharding import AxisType

    from experiments.common import distributed as dist
    from tests.library import _sharded_training as st

    class ProcessLocalDataRun(st.Run):
        """Each process passes only the rows its devices hold (experiments.common.distributed)."""

        def put_batch(self, batch_np):
            (axes,) = st.batch_spec(self.layout)
            rows = dist.process_batch_rows(self.mesh, axes, st.BATCH)
            local = {k: v[rows] for k, v in batch_np.items()}
            return dist.global_batch(local, self.mesh, axes, st.BATCH)

    t0 = time.perf_counter()
    params_np = st.init_mlp(0)
    batches = st.make_batches(9)
    arrays: dict[str, np.ndarray] = {}

    def record(tag, params, state):
        arrays.update(st.flat_with_paths(st.to_host(params), f"{tag}|params"))
        arrays.update(st.flat_with_paths(st.to_host(state), f"{tag}|state"))

    # 1. FSDP over both processes, with a checkpoint after a reference call.
    mesh = st.make_layout_mesh("fsdp", AxisType.Explicit)
    run = st.Run("profit_nref1", mesh=mesh, layout="fsdp")
    n_steps, n_before = 6, 3  # three cycles; save after cycle 2's reference call
    with run.mesh_context():
        params, state = run.init(params_np)
        params, state = run.train(params, state, batches[:n_before])
        assert int(state.count) == 1, "not mid-cycle"
        for tree in (params, state.theta_ref, state.main_state[0].mu):  # across processes
            assert not tree["dense_1"]["kernel"].is_fully_addressable
        ckpt_dir = os.path.join(args.out, "ckpt")
        with ocp.StandardCheckpointer() as ckptr:
            ckptr.save(os.path.join(ckpt_dir, "step3"), {"params": params, "opt_state": state})
            ckptr.wait_until_finished()
            abstract = jax.tree.map(
                ocp.utils.to_shape_dtype_struct, {"params": params, "opt_state": state}
            )
            restored = ckptr.restore(os.path.join(ckpt_dir, "step3"), abstract)
        r_params, r_state = restored["params"], restored["opt_state"]
        assert type(r_state) is type(state)
        for a, b in zip(
            jax.tree.leaves((params, state)), jax.tree.leaves((r_params, r_state)), strict=True
        ):
            assert a.sharding.is_equivalent_to(b.sharding, a.ndim), (a.sharding, b.sharding)
        # Continue both the live and the restored state (the live one is donated).
        r_params, r_state = run.train(r_params, r_state, batches[n_before:n_steps])
        params, state = run.train(params, state, batches[n_before:n_steps])
        record("fsdp", params, state)
        record("fsdp_restored", r_params, r_state)

    # 2. data × model mesh, parameters sharded over both axes; per-process data loading.
    mesh2 = st.make_layout_mesh("2d", AxisType.Auto)
    assert {d.process_index for d in mesh2.devices[0]} == {0}, mesh2.devices
    run2 = ProcessLocalDataRun("profit_nref2", mesh=mesh2, layout="2d")
    with run2.mesh_context():
        rows = dist.process_batch_rows(mesh2, ("data", "model"), st.BATCH)
        assert rows == slice(args.process_id * 16, (args.process_id + 1) * 16), rows
        assembled = st.to_host(run2.put_batch(batches[0]))  # rows landed where they belong
        for k in assembled:
            np.testing.assert_array_equal(assembled[k], batches[0][k])
        params, state = run2.init(params_np)
        params, state = run2.train(params, state, batches[:9])
        record("2d", params, state)
        bad = st.sharding_mismatches(run2, params, state, params_np)
        assert bad == [], bad

    np.savez(os.path.join(args.out, f"process_{args.process_id}.npz"), **arrays)
    print(f"process {args.process_id}: done in {time.perf_counter() - t0:.1f}s", flush=True)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
