"""experiments/resnet: the ResNet's shapes, modes and size; the three batch-statistics steps."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest
from flax import nnx

import profit_optax
from experiments.resnet.model import VARIANTS, ResNet, build_model, num_params, resnet
from experiments.resnet.steps import MODES, make_step
from profit_optax import masks


def images(n, seed=0):
    return jax.random.normal(jax.random.key(seed), (n, 28, 28, 1))


def stats(model):
    return [np.asarray(x) for x in jax.tree.leaves(nnx.state(model, nnx.BatchStat))]


def conv_block_params(cin, cout, stride):
    """Basic block: two 3×3 convs without bias, two BatchNorms (scale, bias), and a 1×1
    projection with its BatchNorm where the shape changes."""
    n = 9 * cin * cout + 9 * cout * cout + 4 * cout
    return n + (cin * cout + 2 * cout if stride != 1 or cin != cout else 0)


@pytest.mark.parametrize("variant", ["tiny", "mini"])
def test_shapes_and_parameter_count(variant):
    # Shapes only: the abstract model (no initializer runs; eager init compiles one
    # program per initializer and shape, seconds on CPU).
    model = nnx.eval_shape(lambda: resnet(variant, 5, rngs=nnx.Rngs(0)))
    x = jax.ShapeDtypeStruct((3, 28, 28, 1), jnp.float32)
    assert nnx.eval_shape(lambda m, x: m(x), model, x).shape == (3, 5)
    v = VARIANTS[variant]
    widths, blocks = v["widths"], v["blocks"]
    assert nnx.eval_shape(lambda m, x: m.features(x), model, x).shape == (3, widths[-1])
    expected = 9 * widths[0] + 2 * widths[0]  # stem conv (no bias) + its BatchNorm
    cin = widths[0]
    for i, (w, n) in enumerate(zip(widths, blocks, strict=True)):
        for j in range(n):
            expected += conv_block_params(cin, w, 2 if i > 0 and j == 0 else 1)
            cin = w
    expected += cin * 5 + 5  # head
    assert num_params(model) == expected
    if variant == "mini":
        assert expected == 77_429
    # the running statistics: mean and var of every BatchNorm, not parameters
    assert sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.BatchStat))) == 2 * sum(
        x.size
        for p, x in jax.tree_util.tree_leaves_with_path(nnx.state(model, nnx.Param))
        if "scale" in jax.tree_util.keystr(p)
    )


def test_resnet18_layout_has_resnet18_size():
    """The paper's ResNet-18 (CIFAR stem, 10 classes): 11.17 M parameters, built abstractly."""
    model = nnx.eval_shape(lambda: resnet("18", 10, rngs=nnx.Rngs(0), in_channels=3))
    assert num_params(model) == 11_173_962


def test_train_mode_uses_batch_statistics_and_eval_mode_running_ones():
    model = resnet("tiny", 5, rngs=nnx.Rngs(0))
    a, b, c = images(4, 1), images(4, 2), images(4, 3) * 3.0 + 1.0
    start = stats(model)
    # training mode: an example's output depends on its batch; the statistics move
    y1 = model(jnp.concatenate([a, b]))[:4]
    moved = stats(model)
    y2 = model(jnp.concatenate([a, c]))[:4]
    assert not np.allclose(y1, y2, atol=1e-4)
    assert all(not np.array_equal(s, t) for s, t in zip(start, moved, strict=True))
    # evaluation mode: outputs per example, the statistics untouched
    model.eval()
    before = stats(model)
    e1 = model(jnp.concatenate([a, b]))[:4]
    e2 = model(jnp.concatenate([a, c]))[:4]
    np.testing.assert_allclose(e1, e2, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(model(a), e1, rtol=1e-5, atol=1e-6)
    assert all(np.array_equal(s, t) for s, t in zip(before, stats(model), strict=True))
    model.train()
    model(a)
    assert not all(np.array_equal(s, t) for s, t in zip(before, stats(model), strict=True))


def test_masks_find_the_stem_and_the_head():
    params = nnx.state(resnet("tiny", 5, rngs=nnx.Rngs(0)), nnx.Param)
    paths = lambda mask: sorted(
        jax.tree_util.keystr(p) for p, m in jax.tree_util.tree_leaves_with_path(mask) if m
    )
    assert all(p.startswith("['embedding']") for p in paths(masks.embedding_mask(params)))
    assert len(paths(masks.embedding_mask(params))) == 3  # conv kernel, norm scale and bias
    assert paths(masks.head_mask(params)) == ["['head']['bias'].value", "['head']['kernel'].value"]


def test_build_model_and_bad_arguments():
    cfg = ml_collections.ConfigDict({"kind": "resnet", "variant": "tiny"})
    assert isinstance(build_model(cfg, 3), ResNet)
    with pytest.raises(ValueError, match="unknown ResNet variant"):
        resnet("50", 3, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="equal length"):
        ResNet(3, (4, 8), (1,), rngs=nnx.Rngs(0))


def loss_fn(model, batch):
    logits = model(batch["image"])
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()


def batch(seed, lead=()):
    rng = np.random.default_rng(seed)
    return {
        "image": jnp.asarray(rng.normal(size=(*lead, 8, 28, 28, 1)), jnp.float32),
        "label": jnp.asarray(rng.integers(0, 5, (*lead, 8)), jnp.int32),
    }


def tx(**kw):
    """SGD main (no step normalisation: runs compared to rounding stay within it)."""
    return profit_optax.profit(optax.sgd(1e-2), optax.sgd(1e-3), **kw)


@pytest.mark.parametrize("mode", MODES)
def test_steps_move_the_statistics_where_their_mode_says(mode):
    """One PROFIT cycle (n_ref = 1) per mode: the statistics move on both calls
    (every_call), only on the call at the model (at_model), once per cycle (one_call)."""
    model = resnet("tiny", 5, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(model, tx(one_call=mode == "one_call"), wrt=nnx.Param)
    step = make_step(mode, loss_fn)
    start = stats(model)
    if mode == "one_call":
        loss = step(model, optimizer, batch(0, lead=(2,)))
        assert np.isfinite(loss)
        assert not any(np.array_equal(s, t) for s, t in zip(start, stats(model), strict=True))
        return
    step(model, optimizer, batch(0))  # at the model
    after_ref = stats(model)
    assert not any(np.array_equal(s, t) for s, t in zip(start, after_ref, strict=True))
    step(model, optimizer, batch(1))  # the main call, at the probe point
    same = [np.array_equal(s, t) for s, t in zip(after_ref, stats(model), strict=True)]
    assert all(same) if mode == "at_model" else not any(same)


def test_one_call_with_batch_statistics_probes_is_the_at_model_run():
    """``one_call`` with training-mode probes takes the same gradients and keeps the same
    statistics as ``at_model`` (so the comparison has three distinct arms)."""
    alt_model, one_model = resnet("tiny", 5, rngs=nnx.Rngs(0)), resnet("tiny", 5, rngs=nnx.Rngs(0))
    alt = nnx.Optimizer(alt_model, tx(), wrt=nnx.Param)
    one = nnx.Optimizer(one_model, tx(one_call=True), wrt=nnx.Param)
    alt_step = make_step("at_model", loss_fn)
    one_step = make_step("one_call", loss_fn, probe_running_average=False)
    for c in range(2):
        b0, b1 = batch(2 * c), batch(2 * c + 1)
        alt_step(alt_model, alt, b0)
        alt_step(alt_model, alt, b1)
        one_step(one_model, one, jax.tree.map(lambda x, y: jnp.stack([x, y]), b0, b1))
    for a, o in zip(
        jax.tree.leaves(nnx.state(alt_model)), jax.tree.leaves(nnx.state(one_model)), strict=True
    ):
        np.testing.assert_allclose(a, o, rtol=1e-5, atol=1e-6)


def test_make_step_rejects_unknown_modes():
    with pytest.raises(ValueError, match="mode must be one of"):
        make_step("sometimes", loss_fn)
