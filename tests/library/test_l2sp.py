"""Tests for profit_optax._src.l2sp."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from profit_optax._src.l2sp import L2SPState, l2sp

HEAD = {"body": {"kernel": False, "bias": False}, "head": {"kernel": True, "bias": True}}


def make_params(seed=0, dtype=jnp.float32):
    k = jax.random.split(jax.random.key(seed), 4)
    return {
        "body": {
            "kernel": jax.random.normal(k[0], (3, 5), dtype),
            "bias": jax.random.normal(k[1], (5,), dtype),
        },
        "head": {
            "kernel": jax.random.normal(k[2], (5, 2), dtype),
            "bias": jax.random.normal(k[3], (2,), dtype),
        },
    }


def loss_fn(params, x):
    h = jnp.tanh(x @ params["body"]["kernel"] + params["body"]["bias"])
    return jnp.sum((h @ params["head"]["kernel"] + params["head"]["bias"]) ** 2)


def penalized_loss(params, x, theta0, alpha, beta):
    sq = lambda t: sum(jnp.sum(v**2) for v in jax.tree.leaves(t))
    diff = jax.tree.map(lambda p, a: p - a, params["body"], theta0["body"])
    return loss_fn(params, x) + 0.5 * alpha * sq(diff) + 0.5 * beta * sq(params["head"])


@pytest.mark.parametrize(("alpha", "beta"), [(0.1, 0.0), (0.5, 0.01), (0.0, 2.0)])
def test_matches_gradient_of_penalized_loss(alpha, beta):
    theta0 = make_params(0)
    x = jax.random.normal(jax.random.key(9), (4, 3))
    tx = l2sp(alpha, beta, head_mask=HEAD)
    state = tx.init(theta0)
    update = jax.jit(tx.update)
    grad = jax.jit(jax.grad(loss_fn))
    penalized_grad = jax.jit(jax.grad(penalized_loss))
    for seed in range(1, 5):  # several points away from theta0
        point = jax.tree.map(lambda a, b: a + 0.3 * b, theta0, make_params(seed))
        updates, _ = update(grad(point, x), state, point)
        want = penalized_grad(point, x, theta0, alpha, beta)
        jax.tree.map(
            lambda u, w: np.testing.assert_allclose(u, w, rtol=1e-5, atol=1e-6), updates, want
        )
    # The penalty really contributes (the test would fail if it were ignored).
    plain = grad(point, x)
    assert not np.allclose(updates["body"]["kernel"], plain["body"]["kernel"]) or alpha == 0.0


def test_chain_with_sgd_equals_sgd_on_penalized_loss():
    theta0 = make_params(0)
    x = jax.random.normal(jax.random.key(9), (4, 3))
    tx = optax.chain(l2sp(0.2, 0.05, head_mask=HEAD), optax.sgd(0.01))
    state = tx.init(theta0)
    params, ref = theta0, theta0
    for _ in range(5):
        updates, state = jax.jit(tx.update)(jax.grad(loss_fn)(params, x), state, params)
        params = optax.apply_updates(params, updates)
        g = jax.grad(penalized_loss)(ref, x, theta0, 0.2, 0.05)
        ref = jax.tree.map(lambda r, gg: r - 0.01 * gg, ref, g)
    jax.tree.map(lambda p, r: np.testing.assert_allclose(p, r, rtol=1e-5, atol=1e-6), params, ref)


def test_no_head_mask_pulls_every_leaf_and_state_layout():
    theta0 = make_params(0)
    state = l2sp(1.0).init(theta0)
    assert isinstance(state, L2SPState)
    assert len(jax.tree.leaves(state.anchor)) == 4
    point = make_params(1)
    zeros = jax.tree.map(jnp.zeros_like, point)
    updates, _ = l2sp(1.0).update(zeros, state, point)
    jax.tree.map(lambda u, p, a: np.testing.assert_allclose(u, p - a), updates, point, theta0)
    masked_state = l2sp(1.0, head_mask=HEAD).init(theta0)
    assert jax.tree.leaves(masked_state.anchor["head"]) == []


def test_keeps_dtype():
    theta0 = make_params(0, jnp.bfloat16)
    tx = l2sp(0.1, 0.1, head_mask=lambda p: HEAD)
    updates, _ = tx.update(theta0, tx.init(theta0), theta0)
    assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(updates))


def test_errors():
    with pytest.raises(ValueError, match="`alpha` must be >= 0"):
        l2sp(-1.0)
    with pytest.raises(ValueError, match="`beta` must be >= 0"):
        l2sp(1.0, -0.1)
    with pytest.raises(TypeError, match="`alpha` must be a number"):
        l2sp("0.1")
    params = make_params(0)
    tx = l2sp(0.1)
    with pytest.raises(ValueError, match="`params` is required"):
        tx.update(params, tx.init(params))
    with pytest.raises(ValueError, match="same structure as params"):
        l2sp(0.1, head_mask={"head": True}).init(params)
