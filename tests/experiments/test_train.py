"""The generic train loop of the suites (experiments.common.train) with registry methods."""

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


def test_one_step_builder_with_and_without_model_state():
    """A model state that the loss ignores leaves the training exactly as without one; the
    state returned by each call is the loss's; a one-call method needs a ModelState."""
    from experiments.common.train import ModelState

    batches, loss_fn = regression_problem()

    def stateful_loss(params, batch, rng, state):
        loss, aux = loss_fn(params, batch, rng)
        return loss, (aux, {"calls": state["calls"] + 1})

    params = {"w": jnp.zeros(3)}
    method = registry.make_method("adam", params, learning_rate=0.05)
    plain = Trainer(method, loss_fn).fit(params, batches(0), 12, rng=jax.random.key(0))
    with_state = Trainer(method, stateful_loss, model_state=ModelState()).fit(
        params, batches(0), 12, rng=jax.random.key(0), state={"calls": jnp.zeros((), jnp.int32)}
    )
    np.testing.assert_array_equal(with_state.eval_params["w"], plain.eval_params["w"])
    assert int(with_state.model_state["calls"]) == 12 and plain.model_state is None

    one_call = registry.make_method("profit", params, learning_rate=0.05, one_call=True)
    assert one_call.grads_per_call == 2
    with pytest.raises(ValueError, match="one-call method needs a ModelState"):
        Trainer(one_call, loss_fn)
