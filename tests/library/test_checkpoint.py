"""Checkpoint mid-cycle with Orbax, resume in a fresh process, compare bitwise.

The parent process runs every case uninterrupted and saves (params, optimizer
state) with ``orbax.checkpoint.StandardCheckpointer`` after ``save_after``
calls, in the middle of a PROFIT cycle. A fresh Python process (this module run
as a script) restores each checkpoint into the structure ``tx.init`` gives,
continues, and writes its trajectory; it must equal the uninterrupted one bit
for bit.
"""

from __future__ import annotations

import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import profit_optax
from profit_optax import ProfitState, profit_lean, ref_params, warmup_then
from profit_optax._src.readers import find_state

ocp = pytest.importorskip("orbax.checkpoint")

ROOT = pathlib.Path(__file__).resolve().parents[2]
N_CALLS = 10


def _exact(params, state):
    return profit_optax.ref_params(params, state)


# name -> (transformation factory, calls before the checkpoint, model readout)
CASES = {
    # n_ref=1: saved after a reference call (calls: ref, main, ref | ...)
    "n_ref1_after_reference": (
        lambda: profit_optax.profit(optax.adam(1e-2), optax.sgd(1e-3)),
        3,
        _exact,
    ),
    # n_ref=2: after the first and after the second reference call of the 2nd cycle
    "n_ref2_after_first_reference": (
        lambda: profit_optax.profit(optax.adam(1e-2), optax.sgd(1e-3, momentum=0.9), n_ref=2),
        4,
        _exact,
    ),
    "n_ref2_after_second_reference": (
        lambda: profit_optax.profit(optax.adam(1e-2), optax.sgd(1e-3, momentum=0.9), n_ref=2),
        5,
        _exact,
    ),
    # automatic reference step: its state (the last main step's norm) must survive too
    "auto_reference_n_ref2": (
        lambda: profit_optax.profit(optax.adam(1e-2), None, n_ref=2),
        5,
        _exact,
    ),
    # what a user holds: a chain around a warm-up switch around PROFIT, saved mid-cycle
    "chain_warmup_then_profit": (
        lambda: optax.chain(
            optax.clip_by_global_norm(1.0),
            warmup_then(optax.adamw(1e-2), profit_optax.profit(optax.adam(1e-2)), 2),
        ),
        5,
        _exact,
    ),
    "lean": (lambda: profit_lean(optax.adam(1e-2), ref_scale=0.1), 4, ref_params),
}


def _data():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(N_CALLS, 8, 2)).astype(np.float32)
    y = (np.sin(2 * x[..., :1]) + 0.5 * x[..., 1:]).astype(np.float32)
    params = {
        "w1": (rng.normal(size=(2, 16)) / np.sqrt(2)).astype(np.float32),
        "b1": np.zeros(16, np.float32),
        "w2": (rng.normal(size=(16, 1)) / 4).astype(np.float32),
        "b2": np.zeros(1, np.float32),
    }
    return jnp.asarray(x), jnp.asarray(y), jax.tree.map(jnp.asarray, params)


def _make_step(tx):
    x, y, _ = _data()

    def loss(p, k):
        h = jnp.tanh(x[k] @ p["w1"] + p["b1"])
        return jnp.mean((h @ p["w2"] + p["b2"] - y[k]) ** 2)

    @jax.jit
    def step(params, state, k):
        updates, state = tx.update(jax.grad(loss)(params, k), state, params)
        return optax.apply_updates(params, updates), state

    return step


def _run(tx, params, state, start, stop):
    step = _make_step(tx)
    trajectory = []
    for k in range(start, stop):
        params, state = step(params, state, jnp.int32(k))
        trajectory.append(params)
    return params, state, trajectory


def _stack(trajectory):
    return {k: np.stack([np.asarray(p[k]) for p in trajectory]) for k in trajectory[0]}


def resume(name: str, ckpt_dir: str, out_file: str) -> None:
    """Runs in the fresh process: restore, continue to N_CALLS, save the trajectory."""
    make_tx, save_after, readout = CASES[name]
    tx = make_tx()
    _, _, params0 = _data()
    target = {"params": params0, "opt_state": tx.init(params0)}
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    restored = ocp.StandardCheckpointer().restore(ckpt_dir, abstract)
    params, state = restored["params"], restored["opt_state"]
    model_at_save = readout(params, state)
    _, _, trajectory = _run(tx, params, state, save_after, N_CALLS)
    arrays = {f"traj_{k}": v for k, v in _stack(trajectory).items()}
    arrays.update({f"model_{k}": np.asarray(v) for k, v in model_at_save.items()})
    np.savez(out_file, **arrays)


@pytest.mark.slow
def test_resume_in_fresh_process_is_bitwise_identical(tmp_path):
    checkpointer = ocp.StandardCheckpointer()
    expected = {}
    for name, (make_tx, save_after, readout) in CASES.items():
        tx = make_tx()
        _, _, params = _data()
        params, state, _ = _run(tx, params, tx.init(params), 0, save_after)
        checkpointer.save(tmp_path / name, {"params": params, "opt_state": state})
        _, _, tail = _run(tx, params, state, save_after, N_CALLS)
        expected[name] = (_stack(tail), jax.device_get(readout(params, state)))
        if name.startswith("n_ref"):  # saved mid-cycle: the held params are a probe
            assert int(find_state(state, ProfitState).count) > 0
    checkpointer.wait_until_finished()

    script = (
        "import sys; from tests.library.test_checkpoint import CASES, resume\n"
        "for name in CASES: resume(name, sys.argv[1] + '/' + name, sys.argv[1] + f'/{name}.npz')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]

    for name, (tail, model) in expected.items():
        got = np.load(tmp_path / f"{name}.npz")
        for k, v in tail.items():
            np.testing.assert_array_equal(got[f"traj_{k}"], v, err_msg=f"{name} {k}")
        for k, v in model.items():
            np.testing.assert_array_equal(got[f"model_{k}"], v, err_msg=f"{name} θ_ref {k}")


def test_checkpoint_round_trip_keeps_structure_and_dtypes(tmp_path):
    """In-process: the restored state has init's structure and dtypes (one-call mode's
    ``theta_ref=None`` and bf16 params included)."""
    params = {"w": jnp.ones((4, 3), jnp.bfloat16), "b": jnp.zeros(3, jnp.float32)}
    for i, tx in enumerate(
        [
            profit_optax.profit(optax.adam(1e-3), optax.sgd(1e-5), n_ref=2),
            profit_optax.profit(optax.adam(1e-3), optax.sgd(1e-5), one_call=True),
            profit_lean(optax.adamw(1e-3)),
        ]
    ):
        state = tx.init(params)
        checkpointer = ocp.StandardCheckpointer()
        checkpointer.save(tmp_path / str(i), {"params": params, "opt_state": state})
        checkpointer.wait_until_finished()
        target = {"params": params, "opt_state": state}
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        restored = checkpointer.restore(tmp_path / str(i), abstract)
        assert jax.tree.structure(restored) == jax.tree.structure(target)
        for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(target), strict=True):
            assert a.dtype == b.dtype and a.shape == b.shape
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
