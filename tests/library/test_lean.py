"""Tests of the memory-lean PROFIT mode (Δ recomputed from the main optimizer's momentum).

Run as a script (``python -m tests.library.test_lean``) to print the accuracy table of
docs/real_runs.md.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import profit_optax
from profit_optax import ProfitLeanState, profit_lean, ref_params
from profit_optax._src.lean import find_first_moment
from tests.library.numpy_ref_profit import NumpyAdam
from tests.library.test_profit import PROBLEMS


def _leaf_bytes(tree):
    return sum(np.asarray(x).nbytes for x in jax.tree.leaves(tree))


# ---------------------------------------------------------------------------
# Memory and state contract.


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize(
    "main",
    [optax.adam(1e-3), optax.adamw(1e-3), optax.sgd(1e-2, momentum=0.9)],
    ids=["adam", "adamw", "sgd_momentum"],
)
def test_state_holds_no_parameter_sized_buffer_beyond_the_main_optimizer(dtype, main):
    params = {"w": jnp.zeros((64, 32), dtype), "b": jnp.zeros(32, dtype)}
    state = profit_lean(main).init(params)
    extra = _leaf_bytes(state) - _leaf_bytes(main.init(params))
    assert 0 < extra <= 64  # the scale and the diagnostics: scalars only
    exact = profit_optax.profit(main, optax.sgd(1e-5)).init(params)
    assert _leaf_bytes(exact) - _leaf_bytes(state) >= _leaf_bytes(params)  # θ_ref saved


def test_fixed_state_structure_single_trace_and_dtypes():
    theta0, grad_at = PROBLEMS["mlp"]("float32")
    tx = profit_lean(optax.adamw(1e-2))
    traces = []

    @jax.jit
    def step(params, state, grads):
        traces.append(1)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params = jax.tree.map(jnp.asarray, theta0)
    state = tx.init(params)
    spec = jax.tree.map(lambda x: (x.shape, x.dtype), state)
    for k in range(5):
        params, state = step(params, state, grad_at(params, k))
        assert jax.tree.map(lambda x: (x.shape, x.dtype), state) == spec
    assert len(traces) == 1
    assert isinstance(state, ProfitLeanState)


# ---------------------------------------------------------------------------
# The algorithm, against a NumPy transcription of the docstring.


def _lean_numpy(theta0, grad_at, lr, ref_scale, n_steps):
    """θ' = θ_ref + Δ(m, s), Δ = −s m/‖m‖; project g(θ') off Δ; Adam step from θ_ref."""
    adam = NumpyAdam(lr)
    theta_ref = {k: v.copy() for k, v in theta0.items()}
    s, history = 0.0, []
    for k in range(n_steps):
        m = adam.m if adam.m is not None else {n: np.zeros_like(v) for n, v in theta0.items()}
        m_norm = np.sqrt(sum(np.sum(v**2) for v in m.values()))
        delta = {n: -s * v / m_norm if m_norm > 0 else 0 * v for n, v in m.items()}
        probe = {n: theta_ref[n] + delta[n] for n in theta_ref}
        g = {n: np.asarray(v) for n, v in grad_at(probe, k).items()}
        dot = sum(np.sum(g[n] * delta[n]) for n in g)
        dd = sum(np.sum(delta[n] ** 2) for n in g)
        if dot < 0 and dd > 0:
            g = {n: g[n] - dot / dd * delta[n] for n in g}
        new = adam.step(theta_ref, g)
        s = ref_scale * np.sqrt(sum(np.sum((new[n] - theta_ref[n]) ** 2) for n in new))
        theta_ref = new
        history.append(theta_ref)
    return history


@pytest.mark.parametrize("problem", ["quadratic", "mlp"])
def test_matches_numpy_transcription_in_float64(problem):
    with jax.enable_x64(True):
        theta0, grad_at = PROBLEMS[problem]("float64")
        lr, ref_scale, n = 0.01, 0.5, 12
        expected = _lean_numpy(theta0, grad_at, lr, ref_scale, n)
        tx = profit_lean(optax.adam(lr), ref_scale=ref_scale)
        update = jax.jit(tx.update)
        params = jax.tree.map(jnp.asarray, theta0)
        state = tx.init(params)
        conflicts = 0
        for k in range(n):
            updates, state = update(grad_at(params, k), state, params)
            params = optax.apply_updates(params, updates)
            conflicts += int(state.diagnostics.conflict)
            got = ref_params(params, state)
            for name in theta0:
                np.testing.assert_allclose(got[name], expected[k][name], rtol=1e-6, atol=1e-8)
        assert conflicts > 0  # the projection was exercised
        # the held params are the probe point, not the model
        assert not np.allclose(params[next(iter(theta0))], expected[-1][next(iter(theta0))])


def test_ref_params_of_a_lean_state_is_jittable_and_keeps_dtypes():
    params = {"w": jnp.ones(4, jnp.bfloat16), "b": jnp.ones(2, jnp.float32)}
    tx = profit_lean(optax.adam(1e-2), ref_scale=1.0)
    state = tx.init(params)
    for _ in range(3):
        updates, state = jax.jit(tx.update)(jax.tree.map(jnp.ones_like, params), state, params)
        params = optax.apply_updates(params, updates)
    out = jax.jit(ref_params)(params, state)
    assert out["w"].dtype == jnp.bfloat16 and out["b"].dtype == jnp.float32
    chained = optax.chain(optax.clip_by_global_norm(1.0), tx)
    cstate = chained.init(params)
    assert jax.tree.structure(ref_params(params, cstate)) == jax.tree.structure(params)


def test_first_moment_lookup_and_clear_errors():
    params = {"w": jnp.ones(3)}
    adam_state = optax.inject_hyperparams(optax.adam)(learning_rate=0.1).init(params)
    assert jax.tree.structure(find_first_moment(adam_state, params)) == jax.tree.structure(params)
    with pytest.raises(ValueError, match="no first-moment buffer"):
        profit_lean(optax.sgd(0.1)).init(params)
    with pytest.raises(ValueError, match="several first-moment buffers"):
        profit_lean(optax.chain(optax.trace(0.9), optax.adam(0.1))).init(params)
    with pytest.raises(ValueError, match="ref_scale"):
        profit_lean(optax.adam(0.1), ref_scale=0.0)
    with pytest.raises(ValueError, match="projection"):
        profit_lean(optax.adam(0.1), projection="layerwise")
    with pytest.raises(TypeError, match="optimizer"):
        profit_lean(optax.adam)
    # an explicit first_moment chooses the buffer
    tx = profit_lean(
        optax.chain(optax.trace(0.9), optax.adam(0.1)), first_moment=lambda s: s[1][0].mu
    )
    state = tx.init(params)
    updates, state = tx.update({"w": jnp.ones(3)}, state, params)
    assert np.all(np.isfinite(np.asarray(updates["w"])))
    # ... and ref_params needs the same choice
    probe = optax.apply_updates(params, updates)
    with pytest.raises(ValueError, match="several first-moment buffers"):
        ref_params(probe, state)
    model = ref_params(probe, state, first_moment=lambda s: s[1][0].mu)
    assert not np.allclose(np.asarray(model["w"]), np.asarray(probe["w"]))
    exact = profit_optax.profit(optax.adam(0.1))
    with pytest.raises(ValueError, match="profit_lean states only"):
        ref_params(params, exact.init(params), first_moment=lambda s: s[0].mu)
    with pytest.raises(ValueError, match="tree like the params"):
        profit_lean(optax.adam(0.1), first_moment=lambda s: s[0].count).init(params)


def test_bf16_probe_below_resolution_does_not_drift():
    """Main steps of zero: the recovered model stays exactly where it started."""
    vals = jnp.array([1.0, 3.0, -2.0, 0.01, 1e-3, -5e-4, 0.0, 100.0], jnp.bfloat16)
    params = {"w": vals}
    tx = profit_lean(optax.sgd(0.0, momentum=0.9), ref_scale=1.0)
    state = tx.init(params)
    update = jax.jit(tx.update)
    for k in range(30):
        grads = {"w": jnp.full_like(vals, (-1.0) ** k)}
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
    np.testing.assert_array_equal(np.asarray(params["w"]), np.asarray(vals))


# ---------------------------------------------------------------------------
# Accuracy against the exact mode on two fine-tuning toys.


def _init_mlp(key, sizes):
    params = {}
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        key, k = jax.random.split(key)
        params[f"w{i}"] = jax.random.normal(k, (a, b)) / np.sqrt(a)
        params[f"b{i}"] = jnp.zeros(b)
    return params


def _mlp(p, x):
    n = len(p) // 2
    for i in range(n):
        x = x @ p[f"w{i}"] + p[f"b{i}"]
        if i < n - 1:
            x = jnp.tanh(x)
    return x


def _mse(p, x, y):
    return jnp.mean((_mlp(p, x) - y) ** 2)


def _xent(p, x, y):
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(_mlp(p, x), y))


def regression_task(seed):
    """2-D regression: pretrain on x₀ ∈ [−2, 0.5], fine-tune on x₀ ∈ [−0.5, 2] with a
    shifted target; the regions overlap (proximal data)."""
    rng = np.random.default_rng(seed)
    f = lambda x: np.sin(2 * x[:, :1]) * np.cos(x[:, 1:])
    xo = np.stack([rng.uniform(-2, 0.5, 1024), rng.uniform(-2, 2, 1024)], 1)
    xn = np.stack([rng.uniform(-0.5, 2, 1024), rng.uniform(-2, 2, 1024)], 1)
    yo, yn = f(xo), f(xn) + 0.5 * np.tanh(xn[:, :1])
    data = [jnp.asarray(a, jnp.float32) for a in (xo, yo, xn, yn)]
    return data, [2, 32, 32, 1], _mse


def classification_task(seed):
    """10-class Gaussian blobs in 16-D; the new domain moves every class centre by a
    random offset of 0.6 of the blob spread and adds a fixed rotation of 2 coordinates."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(10, 16)) * 1.5
    yo, yn = rng.integers(0, 10, 2048), rng.integers(0, 10, 2048)
    xo = centres[yo] + rng.normal(size=(2048, 16))
    shift = rng.normal(size=(10, 16)) * 0.6
    xn = centres[yn] + shift[yn] + rng.normal(size=(2048, 16))
    c, s = np.cos(0.5), np.sin(0.5)
    xn[:, :2] = xn[:, :2] @ np.array([[c, -s], [s, c]])
    data = [jnp.asarray(xo, jnp.float32), jnp.asarray(yo), jnp.asarray(xn, jnp.float32)]
    data.append(jnp.asarray(yn))
    return data, [16, 64, 10], _xent


TASKS = {"regression": regression_task, "classification": classification_task}


def _train(tx, loss, params, x, y, key, n_calls, batch):
    state = tx.init(params)

    def body(carry, k):
        p, s = carry
        idx = jax.random.randint(k, (batch,), 0, x.shape[0])
        u, s = tx.update(jax.grad(loss)(p, x[idx], y[idx]), s, p)
        return (optax.apply_updates(p, u), s), None

    (params, state), _ = jax.lax.scan(body, (params, state), jax.random.split(key, n_calls))
    return params, state


def _methods(lr):
    """name -> (transformation, update calls per main step, model readout)."""
    exact = lambda p, s: profit_optax.ref_params(p, s)
    return {
        "adam": (optax.adam(lr), 1, lambda p, s: p),
        "exact": (profit_optax.profit(optax.adam(lr), optax.sgd(lr / 100)), 2, exact),
        "lean": (profit_lean(optax.adam(lr)), 1, ref_params),
        "lean_2x": (profit_lean(optax.adam(lr)), 2, ref_params),  # equal gradients
    }


def measure(task, seeds, lr=1e-3, main_steps=1000, batch=16):
    """Old/new loss after fine-tuning, per method and seed: {name: array (seeds, 2)}."""
    build = TASKS[task]
    _, sizes, loss = build(0)
    pretrain_tx = optax.adam(3e-3)
    pretrain = jax.jit(lambda p, x, y, k: _train(pretrain_tx, loss, p, x, y, k, 3000, 64)[0])
    finetune = {
        name: jax.jit(
            lambda p, x, y, k, tx=tx, per=per, read=read: read(
                *_train(tx, loss, p, x, y, k, main_steps * per, batch)
            )
        )
        for name, (tx, per, read) in _methods(lr).items()
    }
    results = {name: [] for name in ["pretrained", *finetune]}
    for seed in seeds:
        (xo, yo, xn, yn), _, _ = build(seed)
        p0 = pretrain(_init_mlp(jax.random.key(seed), sizes), xo, yo, jax.random.key(seed + 100))
        results["pretrained"].append((loss(p0, xo, yo), loss(p0, xn, yn)))
        for name, fn in finetune.items():
            p = fn(p0, xn, yn, jax.random.key(seed + 7))
            results[name].append((loss(p, xo, yo), loss(p, xn, yn)))
    return {k: np.asarray(jax.device_get(v), np.float64) for k, v in results.items()}


# What the slow test asserts, and why not "lean ≈ exact". The exact mode with an Adam main
# optimizer is chaotic on the regression toy: Adam normalises the small residual the
# projection leaves into full-size steps, and a rounding-level difference decides whether a
# seed drifts away. Measured with 5 seeds × 600 main steps on the same jax 0.10.2 (AMD EPYC,
# AVX2 default; XLA_FLAGS=--xla_cpu_max_isa=SSE4_2 and =AVX2): seed 1's exact new-data loss
# is 0.164 on the host default and 0.011 under SSE4_2 (pretrained: 0.041), while Adam's and
# the lean mode's losses agree across the three instruction sets to every printed digit.
# So the test compares the lean mode with its own main optimizer (stable trajectories) and
# checks properties of the exact mode that rounding cannot flip; the exact-mode comparison
# is a documented measurement (docs/real_runs.md), not an assertion.
#
# Stated tolerance: averaged over the two seeds, the lean mode's old- and new-data losses
# are at most 50% (relative) + 0.005 (absolute) above bare Adam's at the same number of
# main steps. Measured margin (the bound over the lean loss): 1.42× on regression's
# old-data loss (lean 0.040, bound 0.057), ≥ 2× elsewhere; the lean new-data loss is at
# most 0.13 of the pretrained model's (asserted: below 0.5).
REL_TOL, ABS_TOL = 0.5, 0.005


@pytest.mark.slow
@pytest.mark.numerics
@pytest.mark.parametrize("task", sorted(TASKS))
def test_lean_stays_within_tolerance_of_its_main_optimizer(task):
    res = measure(task, seeds=(0, 1), main_steps=600)
    adam, lean, pre = (res[k].mean(0) for k in ("adam", "lean", "pretrained"))
    for i, what in enumerate(("old", "new")):
        assert lean[i] <= adam[i] * (1 + REL_TOL) + ABS_TOL, (task, what, lean, adam)
    # fine-tuning happened: the lean mode learned the new data
    assert lean[1] < 0.5 * pre[1], (lean, pre)
    # lean is not bare Adam in disguise: the projection changed the trajectory
    assert not np.allclose(res["lean"], res["adam"], rtol=1e-3)
    # the exact mode ran to finite losses and is a different method again
    assert np.all(np.isfinite(res["exact"]))
    assert not np.allclose(res["exact"], res["lean"], rtol=1e-3)


def _table(seeds=(0, 1, 2), lrs=(1e-3, 1e-2)):
    for task in sorted(TASKS):
        for lr in lrs:
            res = measure(task, seeds, lr=lr)
            print(f"\n{task}, Adam lr {lr:g}, {len(seeds)} seeds, 1000 main steps, batch 16")
            print("| method | old loss | new loss |\n|---|---|---|")
            for name, v in res.items():
                m, s = v.mean(0), v.std(0)
                print(f"| {name} | {m[0]:.4f} ± {s[0]:.4f} | {m[1]:.4f} ± {s[1]:.4f} |")


if __name__ == "__main__":
    _table()
