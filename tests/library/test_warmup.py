"""Tests of warmup_then: exact warm-up calls, exact switch, fixed state, copy-free HLO."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import profit_optax
from benchmarks import hlo
from profit_optax._src.warmup import WarmupThenState, warmup_then
from tests.library.test_profit import donated_step, mlp_problem


def _assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


N_WARM = 3


def _make():
    warm = optax.adamw(1e-2, weight_decay=0.1)
    main = profit_optax.profit(optax.adam(1e-2), optax.sgd(1e-3))
    return warm, main, warmup_then(warm, main, N_WARM)


def test_switch_boundary_matches_bare_optimizers_single_trace():
    theta0, grad_at = mlp_problem("float32")
    warm, main, tx = _make()
    traces = []

    @jax.jit
    def step(tx_state, params, grads):
        traces.append(1)
        return tx.update(grads, tx_state, params)

    params = jax.tree.map(jnp.asarray, theta0)
    state = tx.init(params)
    spec = jax.tree.map(lambda x: (x.shape, x.dtype), state)
    warm_update, main_update = jax.jit(warm.update), jax.jit(main.update)
    bare_params, bare_warm = params, warm.init(params)
    for k in range(N_WARM):  # the first N calls are bare warm-up calls
        g = grad_at(params, k)
        updates, state = step(state, params, g)
        bare_updates, bare_warm = warm_update(g, bare_warm, bare_params)
        _assert_trees_equal(updates, bare_updates)
        params = optax.apply_updates(params, updates)
        bare_params = optax.apply_updates(bare_params, bare_updates)
        _assert_trees_equal(state.warmup_state, bare_warm)
    # call N+1, N+2, ...: PROFIT from the params reached, with a fresh state
    bare_main = main.init(params)
    for k in range(N_WARM, N_WARM + 5):
        g = grad_at(params, k)
        updates, state = step(state, params, g)
        bare_updates, bare_main = main_update(g, bare_main, params)
        _assert_trees_equal(updates, bare_updates)
        _assert_trees_equal(state.opt_state, bare_main)
        _assert_trees_equal(state.warmup_state, bare_warm)  # frozen after the switch
        params = optax.apply_updates(params, updates)
        assert jax.tree.map(lambda x: (x.shape, x.dtype), state) == spec
    assert len(traces) == 1
    assert int(state.count) == N_WARM + 1  # saturates
    assert isinstance(state, WarmupThenState)


def test_fresh_state_is_initialised_from_the_warmed_up_params():
    """A state that records params (L2-SP's anchor) records the params at the switch."""
    params = {"w": jnp.array([1.0, 2.0])}
    second = optax.chain(profit_optax.l2sp(1.0), optax.sgd(0.1))
    tx = warmup_then(optax.sgd(0.5), second, 2)
    state = tx.init(params)
    for _ in range(2):
        updates, state = tx.update({"w": jnp.ones(2)}, state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_allclose(params["w"], [0.0, 1.0])
    updates, state = tx.update({"w": jnp.zeros(2)}, state, params)
    # zero gradient at the anchor: L2-SP (anchored at the switch point) does not move
    np.testing.assert_array_equal(np.asarray(updates["w"]), [0.0, 0.0])
    _assert_trees_equal(state.opt_state, second.init(params))
    updates, state = tx.update({"w": jnp.zeros(2)}, state, {"w": jnp.array([1.0, 1.0])})
    np.testing.assert_allclose(updates["w"], [-0.1, 0.0])  # pulled back toward (0, 1)


def test_schedules_of_the_second_optimizer_count_from_the_switch():
    sched = optax.linear_schedule(1.0, 0.0, 4)
    tx = warmup_then(optax.sgd(0.0), optax.sgd(sched), 5)
    params = {"w": jnp.zeros(1)}
    state = tx.init(params)
    steps = []
    for _ in range(7):
        updates, state = tx.update({"w": -jnp.ones(1)}, state, params)
        steps.append(float(updates["w"][0]))
    np.testing.assert_allclose(steps, [0, 0, 0, 0, 0, 1.0, 0.75])


def test_zero_warmup_steps_runs_the_second_optimizer_only():
    theta0, grad_at = mlp_problem("float32")
    main = profit_optax.profit(optax.adam(1e-2), optax.sgd(1e-3), n_ref=2)
    tx = warmup_then(optax.sgd(1.0), main, 0)
    p1 = p2 = jax.tree.map(jnp.asarray, theta0)
    s1, s2 = tx.init(p1), main.init(p2)
    update1, update2 = jax.jit(tx.update), jax.jit(main.update)
    for k in range(6):
        u1, s1 = update1(grad_at(p1, k), s1, p1)
        u2, s2 = update2(grad_at(p2, k), s2, p2)
        p1, p2 = optax.apply_updates(p1, u1), optax.apply_updates(p2, u2)
    _assert_trees_equal(p1, p2)


def test_passes_grad_fn_to_one_call_profit():
    theta0, _ = mlp_problem("float32")
    main = profit_optax.profit(optax.adam(1e-2), optax.sgd(1e-3), one_call=True)
    tx = warmup_then(optax.adam(1e-2), main, 2)
    loss = lambda p, x: jnp.sum(jnp.tanh(x @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"])
    xs = jnp.asarray(np.random.default_rng(0).normal(size=(8, 4, 2)), jnp.float32)

    def step(opt, state, params, k):
        grad_fn = lambda p, i: jax.grad(loss)(p, xs[k + 4])
        return opt.update(jax.grad(loss)(params, xs[k]), state, params, grad_fn=grad_fn)

    step = jax.jit(step, static_argnums=0)
    params = jax.tree.map(jnp.asarray, theta0)
    state = tx.init(params)
    for k in range(4):
        updates, state = step(tx, state, params, k)
        if k == 2:  # the first PROFIT call equals a bare one-call cycle from here
            expected, _ = step(main, main.init(params), params, k)
            _assert_trees_equal(updates, expected)
        params = optax.apply_updates(params, updates)


def test_compiled_donated_step_copies_no_state_buffer():
    """Under donation, the steady-state call copies no parameter-sized buffer: only the
    switch call's init branch materialises fresh zeros (copies of a broadcast)."""
    tx = warmup_then(optax.adamw(1e-3), optax.adam(1e-3), 5)
    copies = hlo.param_sized_copies(donated_step(tx).as_text(), (256, 128))
    flat = [src for srcs in copies.values() for src in srcs]
    assert all("broadcast" in src for src in flat), copies
    assert len(flat) <= 1, copies


def test_rejects_bad_arguments():
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_then(optax.adam(1e-3), optax.sgd(1e-3), -1)
    with pytest.raises(ValueError, match="warmup_steps"):
        warmup_then(optax.adam(1e-3), optax.sgd(1e-3), 2.5)
    with pytest.raises(TypeError, match="warmup_optimizer"):
        warmup_then(optax.adam, optax.sgd(1e-3), 2)
    with pytest.raises(TypeError, match="`optimizer`"):
        warmup_then(optax.adam(1e-3), 0.1, 2)
