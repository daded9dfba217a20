"""Tests for experiments.methods."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.methods import (
    Method,
    available_methods,
    make_method,
    method_bytes_per_param,
    state_bytes_per_param,
)
from profit_optax.masks import embedding_mask, head_mask

EXPECTED_METHODS = [
    "sgd",
    "adam",
    "adamw",
    "rmsprop",
    "adan",
    "head_only",
    "lookahead",
    "sam",
    "freeze_embed_sgd",
    "l2sp",
    "ftp",
    "profit",
    "profit_sgd",
    "profit_rmsprop",
    "profit_adamw",
    "profit_warmup",
    "profit_adamw_warmup",
]
EXPECTED_PERIOD = {
    "lookahead": 6,
    "sam": 2,
    "profit": 2,
    "profit_sgd": 2,
    "profit_rmsprop": 2,
    "profit_adamw": 2,
    "profit_warmup": 2,
    "profit_adamw_warmup": 2,
}
# Required hyper-parameters other than the learning rate.
REQUIRED = {"profit_warmup": {"warmup_steps": 2}, "profit_adamw_warmup": {"warmup_steps": 2}}
# Leaves that must never change, per method (layer names of the MLP below).
FROZEN = {"head_only": {"Dense_0", "Dense_1"}, "freeze_embed_sgd": {"Dense_0"}}
LR = {"sgd": 0.05, "freeze_embed_sgd": 0.05}


def make_params():
    k = jax.random.split(jax.random.key(0), 3)
    sizes = [(4, 16), (16, 16), (16, 3)]
    return {
        f"Dense_{i}": {
            "kernel": jax.random.normal(k[i], s) / np.sqrt(s[0]),
            "bias": jnp.zeros(s[1]),
        }
        for i, s in enumerate(sizes)
    }


def loss_fn(params, x, y):
    h = x
    for i in range(2):
        h = jnp.tanh(h @ params[f"Dense_{i}"]["kernel"] + params[f"Dense_{i}"]["bias"])
    logits = h @ params["Dense_2"]["kernel"] + params["Dense_2"]["bias"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def batches(n, seed=0):
    w = np.random.default_rng(42).normal(size=(4, 3))  # one fixed task
    rng = np.random.default_rng(seed)
    for _ in range(n):
        x = rng.normal(size=(32, 4)).astype(np.float32)
        yield jnp.asarray(x), jnp.asarray((x @ w).argmax(-1))


def build(name, params, **hp):
    return make_method(
        name,
        params,
        head_mask=head_mask(params),
        embed_mask=embedding_mask(params),
        learning_rate=LR.get(name, 1e-2),
        **{**REQUIRED.get(name, {}), **hp},
    )


def train(method: Method, params, n_steps, seed=0):
    stored = method.init_params(params)
    state = method.tx.init(stored)

    @jax.jit
    def step(stored, state, x, y):
        grads = jax.grad(loss_fn)(method.grad_params(stored), x, y)
        updates, state = method.tx.update(grads, state, stored)
        return method.apply(stored, updates), state

    for x, y in batches(n_steps, seed):
        stored, state = step(stored, state, x, y)
    return stored, state


def test_available_methods():
    assert available_methods() == EXPECTED_METHODS


@pytest.mark.parametrize("name", EXPECTED_METHODS)
def test_method_trains_two_periods(name):
    params = make_params()
    method = build(name, params)
    assert method.name == name
    assert method.period == EXPECTED_PERIOD.get(name, 1)
    assert method.hparams["learning_rate"] == LR.get(name, 1e-2)
    stored, state = train(method, params, 2 * method.period)
    final = method.eval_params(stored, state)
    assert jax.tree.structure(final) == jax.tree.structure(params)
    for layer in params:
        for leaf in ("kernel", "bias"):
            before, after = params[layer][leaf], final[layer][leaf]
            assert after.dtype == before.dtype
            if layer in FROZEN.get(name, ()):
                assert after.tobytes() == before.tobytes(), (layer, leaf)
            else:
                assert not np.array_equal(after, before), (layer, leaf)


@pytest.mark.slow
@pytest.mark.parametrize("name", EXPECTED_METHODS)
def test_method_reduces_loss(name):
    params = make_params()
    method = build(name, params)
    n_steps = 30 * method.period if name != "ftp" else 60  # FTP's radius grows ~0.01/step
    stored, state = train(method, params, n_steps)
    x, y = next(batches(1, seed=123))
    before = float(loss_fn(params, x, y))
    after = float(loss_fn(method.eval_params(stored, state), x, y))
    assert after < before - 0.05, (before, after)


def test_lookahead_eval_is_slow_and_grad_is_fast():
    params = make_params()
    method = build("lookahead", params, sync_period=3, slow_step_size=0.5)
    assert method.period == 3
    stored = method.init_params(params)
    assert isinstance(stored, optax.LookaheadParams)
    state = method.tx.init(stored)
    adam = optax.adam(1e-2)
    adam_state, fast = adam.init(params), params
    grad = jax.jit(jax.grad(loss_fn))
    for t, (x, y) in enumerate(batches(3)):
        grads = grad(method.grad_params(stored), x, y)
        assert method.grad_params(stored) is stored.fast
        updates, state = method.tx.update(grads, state, stored)
        stored = method.apply(stored, updates)
        u, adam_state = adam.update(grads, adam_state, fast)
        fast = optax.apply_updates(fast, u)
        evaluated = method.eval_params(stored, state)
        if t < 2:  # not synced yet: eval is the untouched slow copy, grads at fast
            jax.tree.map(np.testing.assert_array_equal, evaluated, params)
            jax.tree.map(
                lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8),
                stored.fast,
                fast,
            )
    # After a full period: slow = slow0 + 0.5 * (fast_3 - slow0), and fast is reset to slow.
    want = jax.tree.map(lambda s, f: s + 0.5 * (f - s), params, fast)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7), evaluated, want
    )
    # fast is reset to slow (through an additive update: equal up to rounding).
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-8),
        stored.fast,
        stored.slow,
    )


@pytest.mark.parametrize("name", ["sam", "profit"])
def test_eval_params_mid_cycle_are_the_real_params(name):
    params = make_params()
    method = build(name, params)
    stored = method.init_params(params)
    state = method.tx.init(stored)
    update = jax.jit(method.tx.update)
    real = stored
    # Two full cycles (PROFIT's automatic reference step is zero in the first cycle).
    grad = jax.jit(jax.grad(loss_fn))
    for t, (x, y) in enumerate(batches(2 * method.period)):
        grads = grad(method.grad_params(stored), x, y)
        updates, state = update(grads, state, stored)
        stored = method.apply(stored, updates)
        evaluated = method.eval_params(stored, state)
        if (t + 1) % method.period == 0:  # end of a cycle: the params are the real ones
            jax.tree.map(np.testing.assert_array_equal, evaluated, stored)
            real = stored
        else:  # mid-cycle: the params are a probe point, eval gives the cycle's start
            jax.tree.map(np.testing.assert_array_equal, evaluated, real)
            if t >= method.period:
                assert not np.array_equal(stored["Dense_0"]["kernel"], real["Dense_0"]["kernel"])


def test_profit_hparams():
    params = make_params()
    method = build("profit", params, n_ref=3, ref_learning_rate=1e-4, projection="per_tensor")
    assert method.period == 4
    assert dict(method.hparams) == {
        "learning_rate": 1e-2,
        "b1": 0.9,
        "b2": 0.999,
        "eps": 1e-8,
        "n_ref": 3,
        "ref_learning_rate": 1e-4,
        "ref_ratio": None,
        "ref_scale": 3e-4,
        "projection": "per_tensor",
        "one_call": False,
    }
    stored, state = train(method, params, 8)
    assert int(state.count) == 0
    assert not np.array_equal(stored["Dense_2"]["kernel"], params["Dense_2"]["kernel"])


def test_ref_ratio_sets_the_reference_learning_rate():
    """ref_ratio = λ_main / λ_ref, for a float and along a schedule; one of the two only."""
    params = make_params()
    grads = jax.tree.map(jnp.ones_like, params)

    def first_ref_update(method):
        state = method.tx.init(params)
        updates, _ = method.tx.update(grads, state, params)
        return float(updates["Dense_0"]["bias"][0])

    explicit = first_ref_update(build("profit", params, ref_learning_rate=1e-4))
    assert explicit == pytest.approx(-1e-4)
    assert first_ref_update(build("profit", params, ref_ratio=100.0)) == pytest.approx(explicit)
    schedule = optax.exponential_decay(1e-2, 1, 0.5)
    method = make_method("profit", params, learning_rate=schedule, ref_ratio=100.0)
    assert first_ref_update(method) == pytest.approx(explicit)
    with pytest.raises(ValueError, match="ref_learning_rate or ref_ratio, not both"):
        build("profit", params, ref_learning_rate=1e-4, ref_ratio=10.0)
    with pytest.raises(ValueError, match="ref_ratio must be a positive number"):
        build("profit", params, ref_ratio=-1.0)


def test_rmsprop_is_pytorchs():
    """eps outside the square root (PyTorch), not optax's default inside."""
    params = {"w": jnp.zeros(2)}
    g = {"w": jnp.array([1e-4, 1.0])}
    method = make_method("rmsprop", params, learning_rate=1.0, eps=1e-3)
    updates, _ = method.tx.update(g, method.tx.init(params), params)
    nu = 0.01 * g["w"] ** 2
    np.testing.assert_allclose(updates["w"], -g["w"] / (jnp.sqrt(nu) + 1e-3), rtol=1e-5)


def test_profit_warmup_runs_adamw_then_profit():
    params = make_params()
    method = build("profit_warmup", params, warmup_steps=4, ref_learning_rate=1e-4)
    assert (method.period, method.grads_per_step) == (2, 2)
    _, state = train(method, params, 8)
    assert int(state.count) == 5  # saturates at warmup_steps + 1
    assert int(state.opt_state.count) == 0  # PROFIT ended on a main call
    for bad in (3, -2, True):
        with pytest.raises(ValueError, match="warmup_steps must be an int >= 0 and a multiple"):
            build("profit_warmup", params, warmup_steps=bad)


def test_profit_adamw_is_profit_over_adamw():
    """PROFIT(AdamW) and its warm-up take AdamW (decoupled decay) as the main optimizer: with
    the reference step off (λ_ref 0), a main step is AdamW's step from θ_ref."""
    params = make_params()
    grads = jax.tree.map(jnp.ones_like, params)
    adamw = build("adamw", params, weight_decay=0.5)
    want, _ = adamw.tx.update(grads, adamw.tx.init(params), params)
    for name in ("profit_adamw", "profit_adamw_warmup"):
        extra = {"warmup_steps": 0} if name.endswith("warmup") else {}
        method = build(name, params, weight_decay=0.5, ref_learning_rate=1e-30, **extra)
        state = method.tx.init(params)
        _, state = method.tx.update(grads, state, params)  # reference call: moves ~0
        got, _ = method.tx.update(grads, state, params)  # main call from θ_ref
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_l2sp_without_a_head_pulls_every_leaf():
    """An all-False head_mask is L2-SP for a model without a new head (a language model):
    every leaf is pulled toward θ0, none decayed toward zero (ftp still rejects it)."""
    params = make_params()
    no_head = jax.tree.map(lambda _: False, params)
    method = make_method("l2sp", params, head_mask=no_head, learning_rate=1e-3, alpha=1.0)
    state = method.tx.init(params)
    moved = jax.tree.map(lambda p: p + 1.0, params)
    zero = jax.tree.map(jnp.zeros_like, params)
    # A zero loss gradient: the update is Adam on the penalty's gradient alpha * (θ - θ0) =
    # +1 everywhere, a step of -lr on every leaf (no leaf is a head decayed toward zero).
    updates, _ = method.tx.update(zero, state, moved)
    for u in jax.tree.leaves(updates):
        np.testing.assert_allclose(u, -1e-3, rtol=1e-3)


def test_grads_per_step():
    params = make_params()
    got = {n: build(n, params).grads_per_step for n in EXPECTED_METHODS}
    want = {n: 1 for n in EXPECTED_METHODS}
    want.update(sam=2, profit=2, profit_sgd=2, profit_rmsprop=2, profit_warmup=2)
    want.update(profit_adamw=2, profit_adamw_warmup=2)
    assert got == want
    assert build("profit", params, n_ref=2).grads_per_step == 3


def test_hparams_defaults_and_overrides():
    params = make_params()
    assert dict(build("adamw", params).hparams)["weight_decay"] == 1e-4
    assert build("sgd", params).hparams["momentum"] == 0.9
    assert build("sgd", params, momentum=0.0).hparams["momentum"] == 0.0
    assert build("head_only", params, inner="sgd").hparams["inner"] == "sgd"
    schedule = optax.cosine_decay_schedule(1e-2, 10)
    make_method("adam", params, learning_rate=schedule)
    with pytest.raises(TypeError):
        build("adamw", params).hparams["weight_decay"] = 0.0  # read-only


def test_error_messages():
    params = make_params()
    hm = head_mask(params)
    with pytest.raises(ValueError, match=r"unknown method 'adagrad'; available methods: \['sgd'"):
        make_method("adagrad", params, learning_rate=0.1)
    with pytest.raises(ValueError, match=r"unknown hyper-parameter\(s\) \['lr'\]; valid: \["):
        make_method("adam", params, lr=0.1)
    with pytest.raises(
        ValueError, match=r"missing required hyper-parameter\(s\) \['learning_rate'\]"
    ):
        make_method("sgd", params)
    with pytest.raises(ValueError, match=r"learning_rate must be a positive float"):
        make_method("sgd", params, learning_rate=-1.0)
    with pytest.raises(
        ValueError, match=r"inner must be one of \['sgd', 'adam', 'adamw', 'rmsprop'\]"
    ):
        make_method("head_only", params, head_mask=hm, learning_rate=0.1, inner="lion")
    with pytest.raises(ValueError, match=r"projection must be one of"):
        make_method("profit", params, learning_rate=0.1, projection="local")
    for name, mask in [
        ("head_only", "head_mask"),
        ("l2sp", "head_mask"),
        ("ftp", "head_mask"),
        ("freeze_embed_sgd", "embed_mask"),
    ]:
        with pytest.raises(ValueError, match=rf"{name}: requires {mask}="):
            make_method(name, params, learning_rate=0.1)
    no_head = jax.tree.map(lambda _: False, params)
    with pytest.raises(ValueError, match="head_mask selects no parameter"):
        make_method("ftp", params, head_mask=no_head, learning_rate=0.1)
    with pytest.raises(ValueError, match="same structure as params"):
        make_method("ftp", params, head_mask={"Dense_2": True}, learning_rate=0.1)


def test_state_bytes_per_param():
    params = {"w": jnp.zeros((100, 10)), "b": jnp.zeros((1000,), jnp.bfloat16)}
    assert state_bytes_per_param(optax.sgd(0.1), params) == 0.0
    # momentum trace in each leaf's dtype: 1000 * 4 + 1000 * 2 bytes over 2000 params.
    assert state_bytes_per_param(optax.sgd(0.1, momentum=0.9), params) == 3.0
    assert state_bytes_per_param(optax.adam(0.1), params) == pytest.approx(6.0 + 4 / 2000)
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), params)
    assert state_bytes_per_param(optax.adam(0.1), shapes) == state_bytes_per_param(
        optax.adam(0.1), params
    )
    with pytest.raises(ValueError, match="no array leaves"):
        state_bytes_per_param(optax.adam(0.1), {})


def test_method_bytes_per_param():
    params = make_params()
    n = sum(x.size for x in jax.tree.leaves(params))
    n_head = params["Dense_2"]["kernel"].size + params["Dense_2"]["bias"].size
    got = {name: method_bytes_per_param(build(name, params), params) for name in EXPECTED_METHODS}
    assert got["sgd"] == 4.0
    assert got["adam"] == pytest.approx(8 + 4 / n)
    # Lookahead: Adam state + the slow copy of the params (+ the sync counter).
    assert got["lookahead"] == pytest.approx(12 + 8 / n)
    # FTP(Adam): Adam + anchor + c_prev on the non-head leaves.
    assert 8 + 8 * (n - n_head) / n < got["ftp"] < 8 + 8 * (n - n_head) / n + 1
    assert got["head_only"] == pytest.approx(8 * n_head / n + 4 / n)
    assert got["freeze_embed_sgd"] == pytest.approx(4 * (n - 4 * 16 - 16) / n)


def vit_tiny_shapes(num_classes=100, image=32, patch=4, width=192, depth=12, heads=3, mlp=768):
    """Shape-only param tree of a ViT-Ti/4 with big_vision / google-research names."""
    f = lambda *s: jax.ShapeDtypeStruct(s, jnp.float32)
    ln = lambda: {"scale": f(width), "bias": f(width)}
    hd = width // heads
    block = lambda: {
        "LayerNorm_0": ln(),
        "MultiHeadDotProductAttention_1": {
            **{
                n: {"kernel": f(width, heads, hd), "bias": f(heads, hd)}
                for n in ("query", "key", "value")
            },
            "out": {"kernel": f(heads, hd, width), "bias": f(width)},
        },
        "LayerNorm_2": ln(),
        "MlpBlock_3": {
            "Dense_0": {"kernel": f(width, mlp), "bias": f(mlp)},
            "Dense_1": {"kernel": f(mlp, width), "bias": f(width)},
        },
    }
    return {
        "embedding": {"kernel": f(patch, patch, 3, width), "bias": f(width)},
        "cls": f(1, 1, width),
        "Transformer": {
            "posembed_input": {"pos_embedding": f(1, (image // patch) ** 2 + 1, width)},
            **{f"encoderblock_{i}": block() for i in range(depth)},
            "encoder_norm": ln(),
        },
        "head": {"kernel": f(width, num_classes), "bias": f(num_classes)},
    }


def test_docs_memory_table_is_current():
    """docs/baselines.md embeds memory_table() for ViT-Ti/4 (CIFAR-100 head); keep it in sync."""
    import pathlib

    from experiments.methods import memory_table

    shapes = vit_tiny_shapes()
    table = memory_table(shapes, head_mask=head_mask(shapes), embed_mask=embedding_mask(shapes))
    docs = pathlib.Path(__file__).parents[2] / "docs" / "baselines.md"
    assert table in docs.read_text(), "regenerate the table in docs/baselines.md:\n" + table
