"""profit_optax.diagnostics under jit: values equal a hand computation, no host transfer."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import profit_optax
from profit_optax._src.readers import find_state

FIELDS = ("conflict", "cos_g_delta", "delta_norm", "grad_norm", "removed_norm", "nonfinite_count")


def _hand(g, delta):
    """The diagnostics of one main step, written out in NumPy float64."""
    g, d = np.asarray(g, np.float64).ravel(), np.asarray(delta, np.float64).ravel()
    dot, dd, gg = g @ d, d @ d, g @ g
    conflict = dot < 0 and dd > 0
    return {
        "conflict": float(conflict),
        "cos_g_delta": dot / np.sqrt(gg * dd) if gg * dd > 0 else 0.0,
        "delta_norm": np.sqrt(dd),
        "grad_norm": np.sqrt(gg),
        "removed_norm": abs(dot) / np.sqrt(dd) if conflict else 0.0,
    }


@pytest.mark.parametrize("g_main", [[2.0, -1.0, 3.0, 0.5], [-2.0, 1.0, 3.0, 0.5]])
def test_values_match_hand_computation_inside_jitted_step(g_main):
    lr_ref = 0.1
    g_ref = np.array([1.0, 0.5, 0.0, -0.25], np.float32)
    tx = optax.chain(
        optax.identity(), profit_optax.profit(optax.adam(1e-2), optax.sgd(lr_ref))
    )  # the helper finds the PROFIT state inside a chain

    @jax.jit
    def step(params, state, g):
        updates, state = tx.update({"w": g}, state, params)
        return optax.apply_updates(params, updates), state, profit_optax.diagnostics(state)

    params = {"w": jnp.array([1.0, 2.0, -1.0, 0.0])}
    state = tx.init(params)
    params, state, diag = step(params, state, jnp.asarray(g_ref))
    assert all(float(diag[k]) == 0 for k in FIELDS)  # no main step yet
    params, state, diag = step(params, state, jnp.asarray(g_main, jnp.float32))
    expected = _hand(g_main, -lr_ref * g_ref)  # Δ = −λ_ref g_ref
    assert sorted(diag) == sorted(FIELDS)
    for k, v in expected.items():
        np.testing.assert_allclose(float(diag[k]), v, rtol=1e-5, atol=1e-7, err_msg=k)
    assert int(diag["nonfinite_count"]) == 0
    for k, v in diag.items():
        assert isinstance(v, jax.Array) and v.shape == ()
        assert v.dtype == (jnp.int32 if k == "nonfinite_count" else jnp.float32)


def test_per_tensor_conflict_is_the_fraction_of_projected_tensors():
    tx = profit_optax.profit(optax.sgd(1.0), optax.sgd(1.0), projection="per_tensor")
    params = {"a": jnp.array([1.0, 0.0]), "b": jnp.array([0.0, 1.0]), "c": jnp.zeros(2)}
    update = jax.jit(tx.update)
    state = tx.init(params)
    g_ref = {"a": jnp.array([1.0, 0.0]), "b": jnp.array([0.0, 1.0]), "c": jnp.zeros(2)}
    upd, state = update(g_ref, state, params)
    params = optax.apply_updates(params, upd)
    g = {"a": jnp.array([1.0, 1.0]), "b": jnp.array([-1.0, -1.0]), "c": jnp.ones(2)}
    _, state = update(g, state, params)
    diag = jax.jit(profit_optax.diagnostics)(state)
    # Δ_a = (−1, 0) conflicts with g_a; Δ_b does not; Δ_c = 0 does not count
    assert float(diag["conflict"]) == 0.5
    np.testing.assert_allclose(float(diag["removed_norm"]), 1.0, rtol=1e-6)  # |⟨g_a, Δ_a⟩|/‖Δ_a‖
    np.testing.assert_allclose(float(diag["delta_norm"]), np.sqrt(2.0), rtol=1e-6)
    np.testing.assert_allclose(float(diag["grad_norm"]), np.sqrt(6.0), rtol=1e-6)


def test_one_call_mode_and_apply_if_finite_wrapper():
    inner = profit_optax.profit(optax.sgd(0.1), optax.sgd(0.5), one_call=True)
    tx = optax.apply_if_finite(inner, 3)
    params = {"w": jnp.array([1.0, -1.0])}
    g_ref, g_main = jnp.array([1.0, 1.0]), jnp.array([3.0, -1.0])

    @jax.jit
    def step(params, state):
        _, state = tx.update({"w": g_ref}, state, params, grad_fn=lambda p, i: {"w": g_main})
        return state, profit_optax.diagnostics(state)

    _, diag = step(params, tx.init(params))
    expected = _hand(g_main, -0.5 * g_ref)
    for k, v in expected.items():
        np.testing.assert_allclose(float(diag[k]), v, rtol=1e-6, atol=1e-7, err_msg=k)


def test_reading_diagnostics_is_device_side():
    """Eagerly the helper hands back the state's own device scalars (no host round trip);
    traced, it contains no callbacks (a host sync inside jit would fail to trace)."""
    tx = optax.chain(optax.clip(1.0), profit_optax.profit(optax.adam(1e-3), optax.sgd(1e-4)))
    params = {"w": jnp.ones(8)}
    state = tx.init(params)
    for _ in range(2):
        upd, state = jax.jit(tx.update)({"w": jnp.arange(8.0)}, state, params)
        params = optax.apply_updates(params, upd)
    diag = profit_optax.diagnostics(state)
    inner = find_state(state, profit_optax.ProfitState).diagnostics
    for k in FIELDS:
        assert diag[k] is getattr(inner, k)
    jaxpr = jax.make_jaxpr(profit_optax.diagnostics)(state)
    assert not [e for e in jaxpr.eqns if "callback" in e.primitive.name]
    host = jax.device_get(diag)
    np.testing.assert_allclose(host["grad_norm"], np.linalg.norm(np.clip(np.arange(8.0), -1, 1)))
