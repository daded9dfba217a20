"""The generic train loop of the suites (experiments.common.train) with registry methods."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import methods as registry
from experiments.common.train import Trainer, train


def regression_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 3)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5], np.float32)

    def batches(seed):
        r = np.random.default_rng(seed)
        while True:
            idx = r.choice(256, 32, replace=False)
            yield {"x": x[idx], "y": y[idx]}

    def loss_fn(params, batch, rng):
        err = batch["x"] @ params["w"] - batch["y"]
        return jnp.mean(err**2), {}

    return batches, loss_fn


def test_trainer_uses_grad_and_eval_params_and_checks_periods():
    batches, loss_fn = regression_problem()
    params = {"w": jnp.zeros(3)}
    method = registry.make_method("lookahead", params, learning_rate=0.05)
    assert method.period == 6
    trainer = Trainer(method, loss_fn)
    evals = []

    def eval_fn(p):
        evals.append(p)
        return {"w0": float(p["w"][0])}

    result = trainer.fit(
        params,
        batches(0),
        240,
        rng=jax.random.key(0),
        eval_fn=eval_fn,
        eval_every=120,
        eval_at_start=True,
    )
    assert [h["step"] for h in result.history] == [0, 120, 240]
    assert result.history[-1]["train_loss"] < result.history[1]["train_loss"]
    np.testing.assert_allclose(result.eval_params["w"], [1.0, -2.0, 0.5], atol=0.05)
    # Stored = LookaheadParams; what was evaluated is the slow copy.
    assert isinstance(result.stored, optax.LookaheadParams)
    np.testing.assert_array_equal(evals[-1]["w"], result.stored.slow["w"])
    assert result.compile_time_s > 0
    np.testing.assert_array_equal(params["w"], jnp.zeros(3))  # input not modified

    again = trainer.fit(params, batches(0), 240, rng=jax.random.key(0))
    assert again.compile_time_s == 0.0  # compiled once per trainer
    np.testing.assert_array_equal(again.eval_params["w"], result.eval_params["w"])

    with pytest.raises(ValueError, match="multiple of the period 6"):
        trainer.fit(params, batches(0), 10, rng=jax.random.key(0))
    with pytest.raises(ValueError, match="eval_every=4"):
        trainer.fit(params, batches(0), 12, rng=jax.random.key(0), eval_every=4)


def test_train_function_with_a_plain_optax_method():
    batches, loss_fn = regression_problem()
    result = train(
        registry.plain_method("adam", optax.adam(0.05)),
        {"w": jnp.zeros(3)},
        loss_fn,
        batches(1),
        200,
        rng=jax.random.key(0),
    )
    np.testing.assert_allclose(result.eval_params["w"], [1.0, -2.0, 0.5], atol=0.05)


def test_a_resumed_run_equals_the_uninterrupted_one():
    """Checkpoints at the evaluation points; resuming from one (host copies, as a saved file
    holds them) gives the same parameters, state and history as running straight through."""
    batches, loss_fn = regression_problem()
    params = {"w": jnp.zeros(3)}
    method = registry.make_method("profit", params, learning_rate=0.05, ref_ratio=10.0)
    eval_fn = lambda p: {"w0": float(p["w"][0])}
    seen = []

    def from_step(first):  # a random-access batch stream, as the text suites' windows are
        stream = batches(0)
        for _ in range(first):
            next(stream)
        return stream

    kw = dict(rng=jax.random.key(0), eval_fn=eval_fn, eval_every=10, eval_at_start=True)
    straight = Trainer(method, loss_fn).fit(
        params, from_step(0), 30, on_checkpoint=seen.append, **kw
    )
    assert [c.step for c in seen] == [10, 20, 30]
    host = jax.device_get((seen[0].stored, seen[0].opt_state))
    mid = dataclasses.replace(seen[0], stored=host[0], opt_state=host[1])
    assert isinstance(jax.tree.leaves(mid.stored)[0], np.ndarray)
    resumed = Trainer(method, loss_fn).fit(params, from_step(10), 30, resume=mid, **kw)
    for a, b in zip(
        jax.tree.leaves((straight.stored, straight.opt_state)),
        jax.tree.leaves((resumed.stored, resumed.opt_state)),
        strict=True,
    ):
        np.testing.assert_array_equal(a, b)
    assert [h["step"] for h in resumed.history] == [0, 10, 20, 30]
    assert resumed.history == straight.history
    with pytest.raises(ValueError, match="resume step 30 must be a multiple"):
        Trainer(method, loss_fn).fit(params, from_step(30), 30, resume=seen[-1], **kw)
