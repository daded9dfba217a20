"""ViT and MLP models: output shapes, parameter names (mask contract) and exact parameter counts."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.mlp.model import MLP
from experiments.vit.model import VARIANTS, vit


def count(tree) -> int:
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def abstract_params(model, image_shape):
    return jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *image_shape))))[
        "params"
    ]


def vit_formula(width, depth, mlp_dim, *, image, patch, channels, num_classes, cls=True):
    """Independent count: conv embedding, pos emb (patches only), cls, pre-LN blocks, head."""
    num_patches = (image // patch) ** 2
    embedding = patch * patch * channels * width + width
    pos = num_patches * width
    layer_norm = 2 * width
    attention = 4 * (width * width + width)  # q, k, v, out: kernel + bias each
    mlp = width * mlp_dim + mlp_dim + mlp_dim * width + width
    block = 2 * layer_norm + attention + mlp
    head = width * num_classes + num_classes
    return embedding + pos + (width if cls else 0) + depth * block + layer_norm + head


@pytest.mark.parametrize(
    "variant, expected",
    # timm's vit_tiny/small_patch16_224 have the same 5.72M / 22.05M parameters; its
    # base/large (86,567,656 / 304,326,632) have `width` more: their position embedding
    # also covers the class token, big_vision's (and ours) covers the patches only.
    [
        ("Ti/16", 5_717_224),
        ("S/16", 22_050_280),
        ("B/16", 86_567_656 - 768),
        ("L/16", 304_326_632 - 1024),
    ],
)
def test_imagenet_parameter_counts(variant, expected):
    model = vit(variant, 1000)
    params = abstract_params(model, (224, 224, 3))
    v = VARIANTS[variant.split("/")[0]]
    formula = vit_formula(
        v["width"], v["depth"], v["mlp_dim"], image=224, patch=16, channels=3, num_classes=1000
    )
    assert count(params) == formula == expected


@pytest.mark.parametrize("pool", ["tok", "gap"])
def test_mini_forward_shapes_and_names(pool):
    model = vit("mini", 5, patch_size=7, pool=pool)
    images = jnp.ones((3, 28, 28, 1))
    variables = model.init(jax.random.key(0), images)
    params = variables["params"]
    logits = model.apply(variables, images)
    assert logits.shape == (3, 5)
    assert np.all(np.isfinite(logits))
    expected_keys = {"embedding", "pos_embedding", "Transformer", "head"}
    expected_keys |= {"cls"} if pool == "tok" else set()
    assert set(params) == expected_keys
    assert params["embedding"]["kernel"].shape == (7, 7, 1, 64)
    assert params["pos_embedding"].shape == (1, 16, 64)
    assert params["head"]["kernel"].shape == (64, 5)
    assert set(params["Transformer"]) == {f"encoderblock_{i}" for i in range(4)} | {"encoder_norm"}
    v = VARIANTS["mini"]
    assert count(params) == vit_formula(
        v["width"],
        v["depth"],
        v["mlp_dim"],
        image=28,
        patch=7,
        channels=1,
        num_classes=5,
        cls=pool == "tok",
    )


def test_dropout_only_in_train_mode():
    model = vit("mini", 3, patch_size=8, dropout_rate=0.5)
    images = jax.random.normal(jax.random.key(1), (2, 32, 32, 3))
    variables = model.init(jax.random.key(0), images)
    eval_a = model.apply(variables, images)
    eval_b = model.apply(variables, images)
    np.testing.assert_array_equal(eval_a, eval_b)
    train_a = model.apply(variables, images, train=True, rngs={"dropout": jax.random.key(2)})
    train_b = model.apply(variables, images, train=True, rngs={"dropout": jax.random.key(3)})
    assert not np.allclose(train_a, train_b)


def test_vit_argument_errors():
    with pytest.raises(ValueError, match="unknown ViT variant"):
        vit("XL", 10, patch_size=4)
    with pytest.raises(ValueError, match="conflicts"):
        vit("Ti/16", 10, patch_size=4)
    with pytest.raises(ValueError, match="patch_size is required"):
        vit("Ti", 10)
    with pytest.raises(ValueError, match="pool"):
        m = vit("mini", 2, patch_size=4, pool="max")
        m.init(jax.random.key(0), jnp.zeros((1, 8, 8, 1)))


def test_mlp_names_shapes_and_count():
    model = MLP(num_classes=5, hidden=(256, 128))
    images = jnp.ones((4, 28, 28, 1))
    variables = model.init(jax.random.key(0), images)
    params = variables["params"]
    assert list(params) == ["Dense_0", "Dense_1", "head"]
    assert model.apply(variables, images).shape == (4, 5)
    assert count(params) == (784 * 256 + 256) + (256 * 128 + 128) + (128 * 5 + 5)
