"""The automatic reference step (``profit(main)`` without a reference optimizer)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import profit_optax
from benchmarks import hlo
from tests.library.test_profit import donated_step, mlp_problem, run_optax


def _scaled(grad_at, scale):
    return lambda p, k: jax.tree.map(lambda g: g * scale, grad_at(p, k))


@pytest.mark.parametrize("n_ref", [1, 2])
def test_invariant_to_the_scale_of_the_loss_with_adam(n_ref):
    theta0, grad_at = mlp_problem("float32")
    # eps=0 removes Adam's only scale-dependent term, so invariance is exact up to rounding
    tx = profit_optax.profit(optax.adam(1e-2, eps=0.0), n_ref=n_ref)
    n_calls = 8 * (n_ref + 1)
    base, _ = run_optax(tx, theta0, grad_at, n_calls)
    for scale in (1e3, 1e-3):
        scaled, state = run_optax(tx, theta0, _scaled(grad_at, scale), n_calls)
        for k in theta0:
            np.testing.assert_allclose(scaled[-1][k], base[-1][k], rtol=2e-4, atol=2e-6)
        assert float(state.diagnostics.delta_norm) > 0


def test_invariance_holds_with_default_adam_eps_to_tolerance():
    theta0, grad_at = mlp_problem("float32")
    tx = profit_optax.profit(optax.adam(1e-2))
    base, _ = run_optax(tx, theta0, grad_at, 16)
    scaled, _ = run_optax(tx, theta0, _scaled(grad_at, 1e3), 16)
    for k in theta0:
        np.testing.assert_allclose(scaled[-1][k], base[-1][k], rtol=1e-3, atol=1e-5)


def test_explicit_sgd_reference_is_not_scale_invariant():
    """The motivation: a fixed λ_ref is not a fixed distance under Adam."""
    theta0, grad_at = mlp_problem("float32")
    tx = profit_optax.profit(optax.adam(1e-2, eps=0.0), optax.sgd(1e-3))
    base, _ = run_optax(tx, theta0, grad_at, 16)
    scaled, _ = run_optax(tx, theta0, _scaled(grad_at, 1e3), 16)
    assert not np.allclose(scaled[-1]["w1"], base[-1]["w1"], rtol=1e-3)


def test_takes_a_real_reference_step():
    """Not λ_ref = 0 in disguise: Δ ≠ 0 after the first cycle, conflicts get projected,
    and the trajectory differs from bare Adam fed the main-call batches."""
    theta0, grad_at = mlp_problem("float32")
    tx = profit_optax.profit(optax.adam(1e-2))
    params = jax.tree.map(jnp.asarray, theta0)
    state = tx.init(params)
    update = jax.jit(tx.update)
    conflicts, norms = [], []
    for k in range(40):
        upd, state = update(grad_at(params, k), state, params)
        params = optax.apply_updates(params, upd)
        if k % 2 == 1:
            conflicts.append(float(state.diagnostics.conflict))
            norms.append(float(state.diagnostics.delta_norm))
    assert norms[0] == 0.0  # first cycle: no main step yet, so no reference step
    assert all(n > 0 for n in norms[1:])
    assert sum(conflicts) >= 3  # projections really happen
    # Δ has the documented length: ref_scale × the last main step's length
    bare, _ = run_optax(optax.adam(1e-2), theta0, lambda p, k: grad_at(p, 2 * k + 1), 20)
    assert not np.allclose(params["w1"], bare[-1]["w1"], atol=1e-5)


def test_reference_length_is_ref_scale_times_main_step():
    theta0, grad_at = mlp_problem("float32")
    tx = profit_optax.profit(optax.sgd(0.1), ref_scale=0.25)
    params = jax.tree.map(jnp.asarray, theta0)
    state = tx.init(params)
    for k in range(2):  # one full cycle
        upd, state = tx.update(grad_at(params, k), state, params)
        params = optax.apply_updates(params, upd)
    main_step = float(state.ref_state.main_step_norm)
    assert main_step > 0
    upd, state = tx.update(grad_at(params, 2), state, params)  # a reference call
    np.testing.assert_allclose(float(optax.tree.norm(upd)), 0.25 * main_step, rtol=1e-5)


def test_auto_reference_in_one_call_mode_matches_alternating():
    theta0, grad_at = mlp_problem("float32")
    alt = profit_optax.profit(optax.adam(1e-2), n_ref=2)
    hist, _ = run_optax(alt, theta0, grad_at, 15, jit=False)
    one = profit_optax.profit(optax.adam(1e-2), n_ref=2, one_call=True)
    params = jax.tree.map(jnp.asarray, theta0)
    state = one.init(params)
    for c in range(5):
        base = 3 * c
        upd, state = one.update(
            grad_at(params, base), state, params, grad_fn=lambda p, i, b=base: grad_at(p, b + 1 + i)
        )
        params = optax.apply_updates(params, upd)
    for k in theta0:
        np.testing.assert_allclose(params[k], hist[-1][k], rtol=1e-5, atol=1e-6)


def test_auto_reference_adds_no_parameter_sized_state():
    params = {"w": jnp.zeros((128, 64)), "b": jnp.zeros(64)}
    main = optax.adam(1e-3)
    state = profit_optax.profit(main).init(params)
    nbytes = lambda t: sum(np.asarray(x).nbytes for x in jax.tree.leaves(t))
    param_bytes = nbytes(params)
    extra = nbytes(state) - nbytes(main.init(params))
    assert param_bytes <= extra <= param_bytes + 64  # θ_ref and scalars, nothing else
    assert nbytes(state.ref_state) == 4


@pytest.mark.parametrize("reference", [None, "sgd"])
def test_donated_step_writes_no_parameter_sized_temporary(reference):
    """Under donation the step keeps no parameter-sized temporary beyond the gradient (u
    and Δ are never written out; the automatic step's length is read off the new θ_ref)
    and copies only the θ_ref save, inside its conditional."""
    shape = (512, 256)
    ref = None if reference is None else optax.sgd(1e-4)
    compiled = donated_step(profit_optax.profit(optax.adam(1e-3), ref), shape)
    temp = compiled.memory_analysis().temp_size_in_bytes
    grads_bytes = 4 * (shape[0] * shape[1] + shape[1])  # the gradient itself is a temporary
    assert temp < 1.1 * grads_bytes, temp / grads_bytes
    copies = hlo.param_sized_copies(compiled.as_text(), shape)
    assert "ENTRY" not in copies, copies
