"""The byte-level transformer of the language-model experiments (experiments.lm.model)."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import profit_optax
from experiments.data import text as T
from experiments.lm import model as M
from profit_optax._src.readers import _unwrap, find_state


def _profit_state(optimizer: nnx.Optimizer) -> profit_optax.ProfitState:
    """The ProfitState inside an nnx.Optimizer's state, as plain arrays."""
    return find_state(_unwrap(optimizer.opt_state), profit_optax.ProfitState)


TINY = M.LMConfig.named("tiny")


def tiny_model(**overrides):
    return M.make_model(dataclasses.replace(TINY, **overrides), seed=0)


def windows(batch=4, seed=0):
    return jnp.asarray(np.random.default_rng(seed).integers(0, 256, (batch, TINY.context + 1)))


@nnx.jit
def forward(model, x):
    return model(x)


def leaves(model, wrt):
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, wrt))]


def abstract(cfg):
    """The model's shapes without computing anything."""
    return nnx.eval_shape(lambda: M.TransformerLM(cfg, rngs=nnx.Rngs(0)))


@pytest.mark.parametrize("tied", [True, False])
def test_parameter_counts(tied):
    w, d, m = TINY.width, TINY.depth, TINY.mlp
    expected = 256 * w + TINY.context * w  # byte and position embeddings
    expected += d * (4 * (w * w + w) + (w * m + m) + (m * w + w) + 2 * 2 * w)  # blocks
    expected += 2 * w + (0 if tied else w * 256 + 256)  # final LayerNorm, untied head
    assert M.param_count(abstract(dataclasses.replace(TINY, tied=tied))) == expected
    assert 0.8e6 < M.param_count(abstract(M.LMConfig.named("small"))) < 1e6


def test_shapes():
    model = tiny_model()
    x = windows()[:, :-1]
    assert forward(model, x).shape == (4, TINY.context, 256)
    assert forward(model, x[:, :5]).shape == (4, 5, 256)  # shorter than the context is fine
    with pytest.raises(ValueError, match="longer than the context"):
        model(jnp.zeros((1, TINY.context + 1), jnp.int32))


def test_named_configs():
    with pytest.raises(ValueError, match="unknown model config 'huge'"):
        M.LMConfig.named("huge")
    with pytest.raises(ValueError, match="not divisible by heads"):
        M.LMConfig(width=30, heads=4)
    with pytest.raises(ValueError, match="lora_rank must be >= 1"):
        M.LMConfig(lora_rank=0)


def test_make_model_is_a_function_of_the_seed():
    a, b, c = (leaves(M.make_model(TINY, seed=s), nnx.Param) for s in (3, 3, 4))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not any(np.array_equal(x, z) for x, z in zip(a, c, strict=True) if x.std() > 0)


def test_causal_a_future_byte_does_not_change_earlier_logits():
    model = tiny_model()
    x = windows()[:, :-1]
    j = 20
    y = x.at[:, j].set((x[:, j] + 1) % 256)
    a, b = forward(model, x), forward(model, y)
    np.testing.assert_allclose(a[:, :j], b[:, :j], rtol=0, atol=1e-6)
    assert float(jnp.abs(a[:, j:] - b[:, j:]).max()) > 1e-3


def test_loss_is_cross_entropy_in_nats():
    model = tiny_model()
    w = windows()
    logits = forward(model, w[:, :-1])
    expected = optax.softmax_cross_entropy_with_integer_labels(logits, w[:, 1:]).mean()
    np.testing.assert_allclose(nnx.jit(M.next_byte_loss)(model, w), expected, rtol=1e-5)
    bpb = T.bits_per_byte(logits, w[:, 1:])
    np.testing.assert_allclose(T.nats_to_bits(expected), bpb, rtol=1e-5)


def test_with_lora_starts_equal_to_its_base_and_copies_it():
    base = tiny_model()
    lora = M.with_lora(base, 4, seed=1)
    x = windows()[:, :-1]
    np.testing.assert_array_equal(
        forward(base, x), forward(lora, x)
    )  # B = 0: the adapters add exactly 0
    # adapters on the 4 attention and 2 MLP projections of every block
    w, m, r = TINY.width, TINY.mlp, 4
    per_block = 4 * (w * r + r * w) + (w * r + r * m) + (m * r + r * w)
    assert M.param_count(lora, nnx.LoRAParam) == TINY.depth * per_block
    assert M.base_param_count(lora) == M.param_count(base)
    with pytest.raises(ValueError, match="already has LoRA adapters"):
        M.with_lora(lora, 4, seed=2)
    # copies, not views: donating the LoRA model's buffers cannot touch the base model
    pointers = lambda m: {
        x.unsafe_buffer_pointer()
        for x in jax.tree.leaves(nnx.state(m, nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam))))
    }
    assert not pointers(base) & pointers(lora)


def train(tx, model, wrt, steps):
    """``steps`` jitted updates of ``model``'s ``wrt`` variables; (optimizer, losses)."""
    optimizer = nnx.Optimizer(model, tx, wrt=wrt)

    @nnx.jit
    def step(model, optimizer, w):
        grad_fn = nnx.value_and_grad(M.next_byte_loss, argnums=nnx.DiffState(0, wrt))
        loss, grads = grad_fn(model, w)
        optimizer.update(model, grads)
        return loss

    losses = [float(step(model, optimizer, windows(seed=s))) for s in range(steps)]
    return optimizer, losses


def test_lora_optimizer_updates_only_the_adapters():
    model = M.with_lora(tiny_model(), 4, seed=1)
    base_before = [
        np.asarray(x)
        for x in jax.tree.leaves(nnx.state(model, nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam))))
    ]
    lora_before = leaves(model, nnx.LoRAParam)
    optimizer, losses = train(optax.adamw(1e-2), model, nnx.LoRAParam, 2)
    assert all(np.isfinite(losses))
    base_after = jax.tree.leaves(nnx.state(model, nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam))))
    assert len(base_after) == len(base_before) > 0
    for a, b in zip(base_before, base_after, strict=True):
        np.testing.assert_array_equal(a, np.asarray(b))  # bit-identical
    changed = [
        not np.array_equal(a, b)
        for a, b in zip(lora_before, leaves(model, nnx.LoRAParam), strict=True)
    ]
    assert all(changed)  # A and B both move (B from zero after the first step)
    # Adam's moments cover the adapters only
    moments = sum(x.size for x in jax.tree.leaves(optimizer.opt_state))
    assert moments < 3 * M.param_count(model, nnx.LoRAParam)


def test_profit_in_nnx_optimizer_over_lora_params():
    model = M.with_lora(tiny_model(), 4, seed=1)
    n_lora = M.param_count(model, nnx.LoRAParam)
    base_before = leaves(model, nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam)))
    tx = profit_optax.profit(optax.adamw(1e-2), optax.sgd(1e-4))
    optimizer, losses = train(tx, model, nnx.LoRAParam, 4)  # two reference + main cycles
    assert all(np.isfinite(losses))
    state = _profit_state(optimizer)
    theta_ref = jax.tree.leaves(state.theta_ref)
    assert sum(x.size for x in theta_ref) == n_lora  # θ_ref covers the adapters only
    assert sorted(x.shape for x in theta_ref) == sorted(
        x.shape for x in leaves(model, nnx.LoRAParam)
    )
    for a, b in zip(
        base_before, leaves(model, nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam))), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    assert int(state.count) == 0  # after a main call


def test_full_fine_tuning_updates_every_parameter():
    model = tiny_model()
    before = leaves(model, nnx.Param)
    optimizer, _ = train(profit_optax.profit(optax.adamw(1e-2)), model, nnx.Param, 2)
    state = _profit_state(optimizer)
    assert sum(x.size for x in jax.tree.leaves(state.theta_ref)) == M.param_count(model)
    assert all(
        not np.array_equal(a, b) for a, b in zip(before, leaves(model, nnx.Param), strict=True)
    )
