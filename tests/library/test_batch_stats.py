"""profit_optax.at_probe_point and profit_optax.batch_stats (batch-norm statistics in nnx).

No training outcome is asserted: which calls move the statistics, by how much (one
batch-norm update, compared with its formula), and bit-exact restoration.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import profit_optax
from profit_optax import batch_stats

MOMENTUM = 0.9


class Net(nnx.Module):
    """BatchNorm on the inputs (so a call's batch statistics are known) -> Linear."""

    def __init__(self, rngs: nnx.Rngs):
        self.norm = nnx.BatchNorm(3, momentum=MOMENTUM, rngs=rngs)
        self.head = nnx.Linear(3, 2, rngs=rngs)

    def __call__(self, x):
        return self.head(self.norm(x))


def loss_fn(model, batch):
    return optax.softmax_cross_entropy_with_integer_labels(model(batch["x"]), batch["y"]).mean()


def batches(n, seed=0):
    rng = np.random.default_rng(seed)
    return [
        {
            "x": jnp.asarray(rng.normal(2.0, 3.0, (8, 3)), jnp.float32),
            "y": jnp.asarray(rng.integers(0, 2, 8), jnp.int32),
        }
        for _ in range(n)
    ]


def stats(model):
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.BatchStat))]


def one_update(before, x):
    """The running (mean, var) after one batch-norm update with batch ``x``."""
    x = np.asarray(x, np.float64)
    mean, var = before
    m = MOMENTUM
    return [m * mean + (1 - m) * x.mean(0), m * var + (1 - m) * x.var(0)]


def flags(tx, calls):
    params, state, out = {"w": jnp.ones(3)}, tx.init({"w": jnp.ones(3)}), []
    for t in range(calls):
        out.append(bool(profit_optax.at_probe_point(state)))
        updates, state = tx.update({"w": jnp.full(3, 1.0 + t)}, state, params)
        params = optax.apply_updates(params, updates)
    return out


@pytest.mark.parametrize("n_ref", [1, 2])
def test_at_probe_point_is_true_on_the_calls_after_the_first_of_a_cycle(n_ref):
    tx = profit_optax.profit(optax.sgd(0.1), optax.sgd(0.01), n_ref=n_ref)
    cycle = [False] + [True] * n_ref
    assert flags(tx, 3 * (n_ref + 1)) == cycle * 3
    # inside a chain, and jitted
    chained = optax.chain(optax.clip_by_global_norm(1.0), tx)
    assert flags(chained, n_ref + 1) == cycle
    state = chained.init({"w": jnp.ones(3)})
    assert not bool(jax.jit(profit_optax.at_probe_point)(state))


def test_at_probe_point_is_false_in_one_call_mode_and_during_warmup():
    one = profit_optax.profit(optax.sgd(0.1), optax.sgd(0.01), one_call=True)
    state = one.init({"w": jnp.ones(3)})
    assert not bool(profit_optax.at_probe_point(state))
    warm = profit_optax.warmup_then(optax.sgd(0.1), profit_optax.profit(optax.sgd(0.1)), 2)
    assert flags(warm, 6) == [False, False, False, True, False, True]


def test_at_probe_point_rejects_lean_and_missing_states():
    with pytest.raises(ValueError, match="profit_lean holds the probe point"):
        profit_optax.at_probe_point(profit_optax.profit_lean(optax.adam(1e-3)).init(jnp.ones(3)))
    with pytest.raises(ValueError, match="exactly one ProfitState"):
        profit_optax.at_probe_point(optax.adam(1e-3).init(jnp.ones(3)))


def test_restore_if_is_bit_exact_and_keeps_the_update_otherwise():
    model = Net(nnx.Rngs(0))
    (b,) = batches(1)
    start = stats(model)
    with batch_stats.restore_if(model, True):
        model(b["x"])
    assert all(np.array_equal(s, t) for s, t in zip(start, stats(model), strict=True))
    with batch_stats.restore_if(model, jnp.array(False)):
        model(b["x"])
    moved = stats(model)
    np.testing.assert_allclose(moved, one_update(start, b["x"]), rtol=1e-6, atol=1e-7)


def _at_model_step():
    @nnx.jit
    def step(model, optimizer, batch):
        with batch_stats.only_at_model(model, optimizer):
            grads = nnx.grad(loss_fn)(model, batch)
        optimizer.update(model, grads)

    return step


@pytest.mark.parametrize("n_ref", [1, 2])
def test_only_at_model_moves_the_statistics_once_per_cycle_under_jit(n_ref):
    """The first call of a cycle (at the model) moves them by one update; the calls at
    probe points (the main call, later reference calls) leave them bit-exactly as they were."""
    model = Net(nnx.Rngs(0))
    tx = profit_optax.profit(optax.adam(1e-2), optax.sgd(1e-2), n_ref=n_ref)
    optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
    step = _at_model_step()
    for i, b in enumerate(batches(2 * (n_ref + 1))):
        before = stats(model)
        probe = bool(profit_optax.at_probe_point(nnx.as_pure(optimizer.opt_state)))
        assert probe == (i % (n_ref + 1) != 0)
        step(model, optimizer, b)
        if probe:
            assert all(np.array_equal(s, t) for s, t in zip(before, stats(model), strict=True))
        else:
            np.testing.assert_allclose(stats(model), one_update(before, b["x"]), rtol=1e-6)


def test_one_call_with_probe_grad_fn_is_the_at_model_run():
    """One-call mode with training-mode probes on a copy = alternating mode with
    only_at_model: same parameters and statistics, cycle after cycle; the model's
    statistics move once per cycle, with the first batch."""
    bs = batches(6)
    alt_model, one_model = Net(nnx.Rngs(0)), Net(nnx.Rngs(0))
    # SGD main: no normalisation that could turn rounding-level gradient differences into
    # full-size steps (the two runs compute the same things in different orders).
    tx = lambda **kw: profit_optax.profit(optax.sgd(0.1), optax.sgd(0.1), **kw)
    alt = nnx.Optimizer(alt_model, tx(), wrt=nnx.Param)
    one = nnx.Optimizer(one_model, tx(one_call=True), wrt=nnx.Param)
    alt_step = _at_model_step()

    @nnx.jit
    def one_step(model, optimizer, first, second):
        grads = nnx.grad(loss_fn)(model, first)
        grad = lambda m, i: nnx.grad(loss_fn)(m, second)
        optimizer.update(model, grads, grad_fn=batch_stats.probe_grad_fn(model, grad))

    for c in range(3):
        first, second = bs[2 * c], bs[2 * c + 1]
        before = stats(one_model)
        alt_step(alt_model, alt, first)
        alt_step(alt_model, alt, second)
        one_step(one_model, one, first, second)
        np.testing.assert_allclose(stats(one_model), one_update(before, first["x"]), rtol=1e-6)
        for a, o in zip(stats(alt_model), stats(one_model), strict=True):
            np.testing.assert_allclose(a, o, rtol=1e-6)
        for a, o in zip(
            jax.tree.leaves(nnx.state(alt_model, nnx.Param)),
            jax.tree.leaves(nnx.state(one_model, nnx.Param)),
            strict=True,
        ):
            np.testing.assert_allclose(a, o, rtol=1e-5, atol=1e-6)


def test_probe_grad_fn_returns_plain_gradients_and_leaves_the_model_alone():
    model = Net(nnx.Rngs(0))
    (b,) = batches(1)
    start = stats(model)
    params = nnx.as_pure(nnx.state(model, nnx.Param))
    grad_fn = batch_stats.probe_grad_fn(model, lambda m, i: nnx.grad(loss_fn)(m, b))
    got = grad_fn(params, 0)
    want = nnx.as_pure(nnx.state(nnx.grad(loss_fn)(nnx.clone(model), b), nnx.Param))
    assert jax.tree.structure(got) == jax.tree.structure(params)
    for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
        np.testing.assert_array_equal(g, w)
    assert all(np.array_equal(s, t) for s, t in zip(start, stats(model), strict=True))
