"""Tests for profit_optax._src.ftp (Fast Trainable Projection)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from profit_optax._src.ftp import FTPState, default_reduce_axes, ftp
from tests.library import numpy_ref_ftp as ref

EXCLUDE = {
    "Dense_0": {"kernel": False, "bias": False},
    "LayerNorm_0": {"scale": False},
    "head": {"kernel": True, "bias": True},
}
N_STEPS = 20
BATCH = 16


def make_params(dtype=np.float32):
    rng = np.random.default_rng(0)
    p = {
        "Dense_0": {"kernel": 0.5 * rng.normal(size=(4, 8)), "bias": 0.1 * rng.normal(size=(8,))},
        "LayerNorm_0": {"scale": 1.0 + 0.1 * rng.normal(size=(8,))},
        "head": {"kernel": 0.3 * rng.normal(size=(8, 3)), "bias": np.zeros(3)},
    }
    return jax.tree.map(lambda x: jnp.asarray(x, dtype), p)


def make_data(dtype=np.float32):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(N_STEPS, BATCH, 4)).astype(dtype)
    y = rng.integers(0, 3, size=(N_STEPS, BATCH))
    return x, y


def loss_fn(params, x, y):
    h = jnp.tanh(x @ params["Dense_0"]["kernel"] + params["Dense_0"]["bias"])
    mean = h.mean(-1, keepdims=True)
    var = ((h - mean) ** 2).mean(-1, keepdims=True)
    h = (h - mean) / jnp.sqrt(var + 1e-6) * params["LayerNorm_0"]["scale"]
    logits = h @ params["head"]["kernel"] + params["head"]["bias"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()


def flat(tree) -> dict:
    return {
        jax.tree_util.keystr(path): np.asarray(leaf)
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }


def unflat(d: dict, like):
    return jax.tree_util.tree_map_with_path(
        lambda path, leaf: jnp.asarray(d[jax.tree_util.keystr(path)], leaf.dtype), like
    )


def row_l1(x: np.ndarray) -> np.ndarray:
    x = np.abs(np.asarray(x, np.float64))
    return x.reshape(-1, x.shape[-1]).sum(0) if x.ndim >= 2 else np.array([x.sum()])


def projected_names():
    return [n for n, ex in flat(EXCLUDE).items() if not ex]


@jax.jit
def _grad(params, x, y):
    return jax.grad(loss_fn)(params, x, y)


def run(tx, params, n_steps=N_STEPS, data=None):
    """Runs tx jitted on the MLP loss; returns the list of (params, grads, state) per step."""
    x, y = make_data() if data is None else data
    state = tx.init(params)
    step = jax.jit(tx.update)
    hist = [(params, None, state)]
    for t in range(n_steps):
        grads = _grad(params, x[t], y[t])
        updates, state = step(grads, state, params)
        params = optax.apply_updates(params, updates)
        hist.append((params, grads, state))
    return hist


# --- Agreement with the NumPy reference -----------------------------------------------


INNER = {
    "sgd_nesterov": (
        lambda: optax.sgd(0.1, momentum=0.9, nesterov=True),
        lambda: ref.SGDNesterovRef(0.1, momentum=0.9),
    ),
    "adamw": (
        lambda: optax.adamw(1e-2, weight_decay=1e-2),
        lambda: ref.AdamWRef(1e-2, weight_decay=1e-2),
    ),
}
CONFIGS = {
    "authors_defaults": {},
    # A fast radius and k < 1 so that annealing, saturated rows and the upper clip occur.
    "fast_radius": {"k": 0.5, "mu": 0.2},
}


@pytest.mark.parametrize("inner_name", sorted(INNER))
@pytest.mark.parametrize("config_name", sorted(CONFIGS))
def test_matches_numpy_reference_float64(inner_name, config_name):
    make_tx, make_ref_inner = INNER[inner_name]
    cfg = CONFIGS[config_name]
    with jax.enable_x64(True):
        params = make_params(np.float64)
        x, y = make_data(np.float64)
        tx = ftp(make_tx(), exclude_mask=EXCLUDE, **cfg)
        state = tx.init(params)
        step = jax.jit(tx.update)
        grad = jax.jit(jax.grad(loss_fn))

        ref_params = flat(params)
        ref_inner = make_ref_inner()
        ref_ftp = ref.FTPRef(ref_params, exclude=[n for n, e in flat(EXCLUDE).items() if e], **cfg)
        for t in range(N_STEPS):
            grads = grad(params, x[t], y[t])
            updates, state = step(grads, state, params)
            params = optax.apply_updates(params, updates)

            ref_grads = flat(grad(unflat(ref_params, params), x[t], y[t]))
            d = ref_inner.step(ref_params, ref_grads)
            ref_params = ref_ftp.step(ref_params, ref_grads, d)

            got = flat(params)
            for name, want in ref_params.items():
                assert got[name].dtype == np.float64
                np.testing.assert_allclose(
                    got[name], want, rtol=1e-9, atol=1e-12, err_msg=f"step {t + 1} {name}"
                )
            got_gamma = flat(state.gamma)
            for name in projected_names():
                np.testing.assert_allclose(
                    got_gamma[name], ref_ftp.gamma[name], rtol=1e-9, err_msg=f"{t + 1} {name}"
                )
        # The radius left its initial value, so the comparison is not vacuous.
        assert all(ref_ftp.gamma[n] > 1e-3 for n in projected_names())
        if config_name == "fast_radius":
            assert ref_ftp.stats == {"saturated_row": True, "upper_clip": True, "annealed": True}


def test_matches_numpy_reference_float32():
    params = make_params()
    hist = run(ftp(optax.sgd(0.1, momentum=0.9, nesterov=True), exclude_mask=EXCLUDE), params)
    ref_params = flat(params)
    ref_inner = ref.SGDNesterovRef(0.1)
    ref_ftp = ref.FTPRef(ref_params, exclude=[n for n, e in flat(EXCLUDE).items() if e])
    for t in range(1, N_STEPS + 1):
        grads = flat(hist[t][1])  # same gradients on both sides: no trajectory drift
        ref_params = ref_ftp.step(flat(hist[t - 1][0]), grads, ref_inner.step(ref_params, grads))
        for name, want in ref_params.items():
            np.testing.assert_allclose(flat(hist[t][0])[name], want, rtol=1e-5, atol=1e-6)


# --- Properties (notes section 1.4, item 8) ------------------------------------------


def test_first_step_stays_at_anchor():
    params = make_params()
    hist = run(ftp(optax.sgd(0.1, momentum=0.9, nesterov=True), exclude_mask=EXCLUDE), params, 1)
    p1, state = flat(hist[1][0]), hist[1][2]
    p0 = flat(params)
    for name in projected_names():
        assert np.all(row_l1(p1[name] - p0[name]) <= 1e-8 + 1e-7), name
        assert float(flat(state.gamma)[name]) == pytest.approx(1e-8)
    assert not np.allclose(p1["['head']['kernel']"], p0["['head']['kernel']"])


def test_second_step_radius_change():
    params = make_params()
    x, y = make_data()
    x, y = x.copy(), y.copy()
    x[1], y[1] = x[0], y[0]  # same batch twice: the gradient keeps pointing outward
    tx = ftp(optax.sgd(0.1, momentum=0.9, nesterov=True), exclude_mask=EXCLUDE)
    hist = run(tx, params, 2, data=(x, y))
    s1, (_, g2, s2) = hist[1][2], hist[2]
    # Adam on one hyper-gradient with the t=2 bias correction: |step| = mu * 0.1/0.19 /
    # sqrt(0.001/0.001999), whatever the gradient's scale.
    expected = 1e-2 * (0.1 / 0.19) / np.sqrt(0.001 / 0.001999)
    assert expected == pytest.approx(0.0074413, abs=1e-7)
    grown = 0
    for name in projected_names():
        g, c_prev, inv_prev = (
            flat(g2)[name],
            flat(s1.prev_offset)[name],
            flat(s1.prev_inv_norm)[name],
        )
        axes = default_reduce_axes(g)
        hg = float(np.sum(np.sum(g * c_prev, axis=axes, keepdims=True) * inv_prev))
        gamma1, gamma2 = float(flat(s1.gamma)[name]), float(flat(s2.gamma)[name])
        max_norm = float(np.max(1.0 / flat(s2.prev_inv_norm)[name]))
        assert hg != 0.0
        if hg < 0 and max_norm > 0.01:
            assert gamma2 - gamma1 == pytest.approx(expected, rel=1e-4), name
            grown += 1
        elif hg > 0:
            assert gamma2 == pytest.approx(1e-8), name  # shrink clipped at the lower bound
    assert grown == len(projected_names())


@pytest.mark.parametrize("inner", ["sgd", "adamw"])
def test_row_l1_constraint_every_step(inner):
    make = {
        "sgd": lambda: optax.sgd(0.1, momentum=0.9, nesterov=True),
        "adamw": lambda: optax.adamw(1e-2),
    }[inner]
    params = make_params()
    hist = run(ftp(make(), exclude_mask=EXCLUDE, mu=0.05), params)
    p0 = flat(params)
    active = 0
    for p, _, state in hist[1:]:
        gamma = flat(state.gamma)
        for name in projected_names():
            dev = row_l1(flat(p)[name] - p0[name])
            rows = p0[name].reshape(-1, p0[name].shape[-1]).shape[0] if p0[name].ndim > 1 else 8
            tol = 1e-6 * rows  # float32 rounding of p + (new_p - p), per element
            assert np.all(dev <= gamma[name] * (1 + 1e-5) + tol), (name, dev.max(), gamma[name])
            active += bool(np.isclose(dev.max(), gamma[name], rtol=1e-3))
    assert active > 0  # the constraint binds somewhere, so this is not vacuous


def _gamma_trace(hist, name):
    return [float(flat(s.gamma)[name]) for _, _, s in hist[1:]]


def test_k_zero_never_shrinks_by_hypergradient():
    params = make_params()
    make = lambda k: ftp(optax.sgd(0.1, momentum=0.9, nesterov=True), exclude_mask=EXCLUDE, k=k)
    hist0, hist1 = run(make(0.0), params), run(make(1.0), params)
    shrank_with_k1 = False
    for name in projected_names():
        g0 = _gamma_trace(hist0, name)
        max_norms = [float(np.max(1.0 / flat(s.prev_inv_norm)[name])) for _, _, s in hist0[1:]]
        for t in range(1, N_STEPS):
            assert g0[t] >= min(g0[t - 1], max_norms[t]) * (1 - 1e-6), (name, t)
        for _, _, s in hist0[1:]:
            assert float(flat(s.gamma_mu)[name]) <= 0.0
        g1 = _gamma_trace(hist1, name)
        max_norms1 = [float(np.max(1.0 / flat(s.prev_inv_norm)[name])) for _, _, s in hist1[1:]]
        shrank_with_k1 |= any(
            g1[t] < g1[t - 1] and g1[t] < max_norms1[t] * (1 - 1e-6) for t in range(1, N_STEPS)
        )
    assert shrank_with_k1  # k matters: with k=1 the hyper-gradient does shrink the radius


def test_excluded_leaves_get_plain_inner_update():
    params = make_params()
    x, y = make_data()
    inner = optax.adamw(1e-2, weight_decay=0.1)
    tx = ftp(inner, exclude_mask=EXCLUDE)
    state, plain_state = tx.init(params), inner.init(params)
    plain_params = params
    step, plain_step = jax.jit(tx.update), jax.jit(inner.update)
    for t in range(5):
        grads = _grad(params, x[t], y[t])
        updates, state = step(grads, state, params)
        plain_updates, plain_state = plain_step(grads, plain_state, plain_params)
        for key in ("kernel", "bias"):
            np.testing.assert_array_equal(updates["head"][key], plain_updates["head"][key])
        params = optax.apply_updates(params, updates)
        plain_params = optax.apply_updates(plain_params, plain_updates)
        np.testing.assert_array_equal(params["head"]["kernel"], plain_params["head"]["kernel"])
    for field in ("anchor", "prev_offset", "prev_inv_norm", "gamma", "gamma_mu", "gamma_nu"):
        assert jax.tree.leaves(getattr(state, field)["head"]) == []
        assert len(jax.tree.leaves(getattr(state, field)["Dense_0"])) == 2


def test_one_dimensional_leaves_use_a_single_norm():
    params = {"b": jnp.ones(5), "s": jnp.asarray(2.0), "w": jnp.ones((2, 3))}
    grads = {
        "b": jnp.asarray([1.0, -2.0, 3.0, 0.5, -0.1]),
        "s": jnp.asarray(4.0),
        "w": jnp.asarray([[1.0, 2.0, 3.0], [-1.0, 0.0, 5.0]]),
    }
    tx = ftp(optax.sgd(1.0), gamma_init=0.3)
    state = tx.init(params)
    assert state.prev_inv_norm["b"].shape == (1,)
    assert state.prev_inv_norm["s"].shape == ()
    assert state.prev_inv_norm["w"].shape == (1, 3)
    updates, state = jax.jit(tx.update)(grads, state, params)
    new = optax.apply_updates(params, updates)
    for name in ("b", "s"):
        c = -np.asarray(grads[name], np.float64)
        want = np.asarray(params[name]) + c * min(1.0, 0.3 / (np.abs(c).sum() + 1e-8))
        np.testing.assert_allclose(new[name], want, rtol=1e-6)
    # Kernels: one ratio per output column.
    c = -np.asarray(grads["w"], np.float64)
    want = 1.0 + c * np.minimum(1.0, 0.3 / (np.abs(c).sum(0, keepdims=True) + 1e-8))
    np.testing.assert_allclose(new["w"], want, rtol=1e-6)
    # An element-wise (naive jnp.sum(axis=())) port would move each entry by min(|c_i|, 0.3).
    assert not np.allclose(new["b"], 1.0 + np.clip(-np.asarray(grads["b"]), -0.3, 0.3))


# --- API, dtypes, validation ---------------------------------------------------------


def test_state_structure_is_fixed_and_dtypes_kept():
    params = jax.tree.map(lambda x: x.astype(jnp.bfloat16), make_params())
    x, y = make_data()
    tx = ftp(optax.adam(1e-2), exclude_mask=lambda p: EXCLUDE)
    state = tx.init(params)
    assert isinstance(state, FTPState)
    structure = jax.tree.structure(state)
    step = jax.jit(tx.update)
    for t in range(3):
        grads = _grad(params, x[t], y[t])
        updates, state = step(grads, state, params)
        assert jax.tree.structure(state) == structure
        assert all(u.dtype == jnp.bfloat16 for u in jax.tree.leaves(updates))
        params = optax.apply_updates(params, updates)
    assert all(p.dtype == jnp.bfloat16 for p in jax.tree.leaves(params))
    assert all(g.dtype == jnp.float32 for g in jax.tree.leaves(state.gamma))
    assert state.anchor["Dense_0"]["kernel"].dtype == jnp.bfloat16
    assert int(state.count) == 3


def test_memory_is_two_param_buffers():
    params = {"w": jnp.zeros((100, 10)), "head": jnp.zeros((10, 2))}
    inner = optax.sgd(0.1)
    state = ftp(inner, exclude_mask={"w": False, "head": True}).init(params)
    n_bytes = sum(x.nbytes for x in jax.tree.leaves(state))
    inner_bytes = sum(x.nbytes for x in jax.tree.leaves(inner.init(params)))
    # anchor + c_prev for w (2 * 1000 floats), 10 inverse row norms, 3 scalars, count.
    assert n_bytes - inner_bytes == 4 * (2 * 1000 + 10 + 3 + 1)


def test_update_forwards_extra_args():
    seen = {}

    def update(updates, state, params=None, **extra):
        seen.update(extra)
        return updates, state

    inner = optax.GradientTransformationExtraArgs(lambda p: optax.EmptyState(), update)
    params = {"w": jnp.ones(3)}
    tx = ftp(inner)
    tx.update(params, tx.init(params), params, value=1.0)
    assert seen == {"value": 1.0}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": -0.1}, "`k` must be >= 0"),
        ({"mu": 0.0}, "`mu` must be > 0"),
        ({"b1": 1.0}, r"`b1` must be in \[0, 1\)"),
        ({"b2": -0.5}, r"`b2` must be in \[0, 1\)"),
        ({"eps": -1.0}, "`eps` must be >= 0"),
        ({"gamma_init": 0.0}, "`gamma_init` must be > 0"),
    ],
)
def test_bad_hyperparameters(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ftp(optax.sgd(0.1), **kwargs)


def test_bad_inputs():
    params = {"w": jnp.ones((2, 2)), "b": jnp.ones(2)}
    with pytest.raises(TypeError, match=r"optax\.GradientTransformation"):
        ftp(lambda g: g)
    tx = ftp(optax.sgd(0.1))
    state = tx.init(params)
    with pytest.raises(ValueError, match="`params` is required"):
        tx.update(params, state)
    with pytest.raises(ValueError, match="same structure as params"):
        ftp(optax.sgd(0.1), exclude_mask={"w": True}).init(params)
    with pytest.raises(TypeError, match="leaves must be bools"):
        ftp(optax.sgd(0.1), exclude_mask={"w": 1, "b": 0}).init(params)
    with pytest.raises(TypeError, match="floating-point leaves"):
        ftp(optax.sgd(0.1)).init({"i": jnp.arange(3)})
    bad_axes = ftp(optax.sgd(0.1), reduce_axes_fn=lambda x: (5,))
    with pytest.raises(ValueError, match="reduce_axes_fn returned"):
        bad_axes.init(params)


def test_works_with_nnx_state_and_masks():
    from flax import nnx

    from profit_optax.masks import head_mask

    class MLP(nnx.Module):
        def __init__(self, rngs):
            self.layers = nnx.List([nnx.Linear(3, 4, rngs=rngs), nnx.Linear(4, 2, rngs=rngs)])

    params = nnx.state(MLP(nnx.Rngs(0)), nnx.Param)
    inner = optax.adam(0.1)
    tx = ftp(inner, exclude_mask=head_mask(params))
    state, inner_state = tx.init(params), inner.init(params)
    grads = jax.tree.map(jnp.ones_like, params)
    new = params
    for _ in range(3):
        updates, state = jax.jit(tx.update)(grads, state, new)
        new = optax.apply_updates(new, updates)
    plain = params
    for _ in range(3):
        u, inner_state = inner.update(grads, inner_state, plain)
        plain = optax.apply_updates(plain, u)
    head, body = new["layers"][1]["kernel"][...], new["layers"][0]["kernel"][...]
    np.testing.assert_allclose(head, plain["layers"][1]["kernel"][...], rtol=1e-6)
    gamma = float(state.gamma["layers"][0]["kernel"][...])
    dev = row_l1(body - params["layers"][0]["kernel"][...])
    assert 0 < dev.max() <= gamma * (1 + 1e-5) + 1e-6
