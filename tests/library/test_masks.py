"""Tests for profit_optax.masks and freezing through optax.selective_transform."""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from profit_optax.masks import (
    embedding_mask,
    head_mask,
    invert_mask,
    normalize_path,
    path_mask,
    top_level_keys,
)

# --- Small but real Flax models with the experiments' module names -------------------


class LinenViT(nn.Module):
    width: int = 16
    patch: int = 4
    depth: int = 2
    classes: int = 5

    @nn.compact
    def __call__(self, x):
        x = nn.Conv(self.width, (self.patch, self.patch), strides=self.patch, name="embedding")(x)
        b, h, w, c = x.shape
        x = x.reshape(b, h * w, c)
        cls = self.param("cls", nn.initializers.zeros, (1, 1, c))
        x = jnp.concatenate([jnp.tile(cls, (b, 1, 1)), x], axis=1)
        pos = self.param("pos_embedding", nn.initializers.normal(0.02), (1, x.shape[1], c))
        x = x + pos
        for i in range(self.depth):
            y = nn.LayerNorm(name=f"ln_{i}")(x)
            x = x + nn.MultiHeadDotProductAttention(num_heads=2, name=f"attn_{i}")(y, y)
            x = x + nn.Dense(c, name=f"mlp_{i}")(nn.LayerNorm(name=f"ln2_{i}")(x))
        x = nn.LayerNorm(name="encoder_norm")(x)
        return nn.Dense(self.classes, name="head")(x[:, 0])


class LinenMLP(nn.Module):
    @nn.compact
    def __call__(self, x):
        for width in (8, 8):
            x = nn.relu(nn.Dense(width)(x))
            x = nn.LayerNorm()(x)
        return nn.Dense(3)(x)


class NnxViT(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.embedding = nnx.Conv(3, 16, (4, 4), strides=4, rngs=rngs)
        self.cls = nnx.Param(jnp.zeros((1, 1, 16)))
        self.pos_embedding = nnx.Param(jnp.zeros((1, 5, 16)))
        self.blocks = nnx.List([nnx.Linear(16, 16, rngs=rngs) for _ in range(2)])
        self.head = nnx.Linear(16, 5, rngs=rngs)


class NnxMLP(nnx.Module):
    def __init__(self, rngs: nnx.Rngs):
        self.layers = nnx.List([nnx.Linear(4, 8, rngs=rngs), nnx.Linear(8, 3, rngs=rngs)])
        self.norm = nnx.LayerNorm(8, rngs=rngs)


@functools.cache
def linen_vit_variables():
    return LinenViT().init(jax.random.key(0), jnp.zeros((1, 8, 8, 3)))


@functools.cache
def linen_mlp_params():
    return LinenMLP().init(jax.random.key(0), jnp.zeros((1, 4)))["params"]


def selected(mask) -> set[str]:
    return {
        "/".join(str(k) for k in normalize_path(p))
        for p, m in jax.tree_util.tree_leaves_with_path(mask)
        if m
    }


# --- Mask helpers ------------------------------------------------------------------


def test_vit_linen_masks_with_params_collection():
    variables = linen_vit_variables()
    assert set(variables) == {"params"}
    emb, head = embedding_mask(variables), head_mask(variables)
    assert jax.tree.structure(emb) == jax.tree.structure(variables)
    assert selected(emb) == {"embedding/kernel", "embedding/bias"}
    assert selected(head) == {"head/kernel", "head/bias"}
    # Same result without the collection key.
    assert selected(embedding_mask(variables["params"])) == selected(emb)


def test_mlp_linen_masks_pick_first_and_last_dense():
    params = linen_mlp_params()
    assert "LayerNorm_0" in params and "Dense_2" in params
    assert selected(embedding_mask(params)) == {"Dense_0/kernel", "Dense_0/bias"}
    assert selected(head_mask(params)) == {"Dense_2/kernel", "Dense_2/bias"}


def test_mlp_more_than_ten_layers_sorted_numerically():
    params = {f"Dense_{i}": {"bias": jnp.zeros(1)} for i in range(12)}
    assert selected(head_mask(params)) == {"Dense_11/bias"}
    assert selected(embedding_mask(params)) == {"Dense_0/bias"}


def test_nnx_state_masks():
    state = nnx.state(NnxViT(nnx.Rngs(0)), nnx.Param)
    emb = embedding_mask(state)
    assert jax.tree.structure(emb) == jax.tree.structure(state)
    assert selected(emb) == {"embedding/kernel", "embedding/bias"}
    assert selected(head_mask(state)) == {"head/kernel", "head/bias"}

    mlp = nnx.state(NnxMLP(nnx.Rngs(0)), nnx.Param)
    assert selected(embedding_mask(mlp)) == {"layers/0/kernel", "layers/0/bias"}
    assert selected(head_mask(mlp)) == {"layers/1/kernel", "layers/1/bias"}


def test_explicit_names_and_prefixes():
    variables = linen_vit_variables()
    assert selected(head_mask(variables, names="encoder_norm")) == {
        "encoder_norm/scale",
        "encoder_norm/bias",
    }
    # names match any path component, prefixes match from the root.
    assert selected(embedding_mask(variables, names=["query"])) == {
        f"attn_{i}/query/{p}" for i in range(2) for p in ("kernel", "bias")
    }
    assert selected(embedding_mask(variables, prefixes=["embedding", "cls"])) == {
        "embedding/kernel",
        "embedding/bias",
        "cls",
    }
    assert selected(head_mask(variables, prefixes="head/kernel")) == {"head/kernel"}
    assert selected(path_mask(variables, ["attn_0/query"])) == {
        "attn_0/query/kernel",
        "attn_0/query/bias",
    }
    predicate = lambda path, leaf: path[-1] == "scale"
    assert all(k.endswith("scale") for k in selected(path_mask(variables, predicate)))
    assert selected(invert_mask(head_mask(variables))) == selected(
        path_mask(variables, lambda path, leaf: path[0] != "head")
    )


def test_errors_name_what_was_looked_for():
    params = {"encoder": {"w": jnp.zeros(2)}, "classifier": {"w": jnp.zeros(2)}}
    with pytest.raises(
        ValueError, match=r"'head'.*Top-level keys found: \['classifier', 'encoder'\]"
    ):
        head_mask(params)
    with pytest.raises(ValueError, match=r"embedding_mask: found neither .*'embedding'"):
        embedding_mask(params)
    with pytest.raises(ValueError, match=r"no parameter matched module names \['fc'\]"):
        head_mask(params, names="fc")
    with pytest.raises(ValueError, match=r"path prefixes \['classifier/b'\]"):
        head_mask(params, prefixes="classifier/b")
    with pytest.raises(TypeError, match="names must be a string or a sequence"):
        head_mask(params, names=3)
    assert selected(head_mask(params, names="classifier")) == {"classifier/w"}
    assert top_level_keys({"params": params}) == ["classifier", "encoder"]


# --- Freezing with optax.selective_transform ----------------------------------------


def _xent(model_apply):
    def loss(params, x, y):
        logits = model_apply(params, x)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    return loss


def _state_floats(state) -> int:
    return sum(
        int(np.size(x)) for x in jax.tree.leaves(state) if jnp.issubdtype(x.dtype, jnp.floating)
    )


@pytest.mark.parametrize(
    "inner",
    [
        lambda: optax.adamw(1e-2, weight_decay=0.5),
        lambda: optax.sgd(1e-1, momentum=0.9),
    ],
    ids=["adamw_wd", "sgd_momentum"],
)
def test_frozen_embedding_never_changes(inner):
    model = LinenViT()
    variables = linen_vit_variables()
    freeze = embedding_mask(variables)
    tx = optax.selective_transform(inner(), freeze_mask=freeze)
    state = tx.init(variables)
    # Frozen leaves hold no optimizer state: the state has exactly the floats the plain
    # optimizer would keep for the trainable leaves.
    trainable = sum(
        int(np.size(p))
        for p, f in zip(jax.tree.leaves(variables), jax.tree.leaves(freeze), strict=True)
        if not f
    )
    per_param = _state_floats(inner().init(variables)) / sum(
        int(np.size(p)) for p in jax.tree.leaves(variables)
    )
    assert _state_floats(state) == round(per_param) * trainable

    loss = _xent(model.apply)
    rng = np.random.default_rng(0)

    @jax.jit
    def step(variables, state, x, y):
        grads = jax.grad(loss)(variables, x, y)
        updates, state = tx.update(grads, state, variables)
        return optax.apply_updates(variables, updates), state

    params = variables
    for _ in range(4):
        x = jnp.asarray(rng.normal(size=(4, 8, 8, 3)), jnp.float32)
        y = jnp.asarray(rng.integers(0, 5, size=4))
        params, state = step(params, state, x, y)
    before, after = variables["params"], params["params"]
    for name in ("kernel", "bias"):
        np.testing.assert_array_equal(after["embedding"][name], before["embedding"][name])
        assert after["embedding"][name].tobytes() == before["embedding"][name].tobytes()
    # Everything else moved (so the test would notice a no-op optimizer).
    for name in ("cls", "pos_embedding"):
        assert not np.array_equal(after[name], before[name])
    assert not np.array_equal(after["head"]["kernel"], before["head"]["kernel"])


def test_freezing_works_on_nnx_state():
    state = nnx.state(NnxViT(nnx.Rngs(0)), nnx.Param)
    tx = optax.selective_transform(
        optax.adamw(0.1, weight_decay=0.1), freeze_mask=embedding_mask(state)
    )
    opt_state = tx.init(state)
    grads = jax.tree.map(jnp.ones_like, state)
    params = state
    update = jax.jit(tx.update)
    for _ in range(3):
        updates, opt_state = update(grads, opt_state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_array_equal(
        params["embedding"]["kernel"][...], state["embedding"]["kernel"][...]
    )
    assert not np.array_equal(params["head"]["kernel"][...], state["head"]["kernel"][...])
