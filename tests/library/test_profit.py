"""Tests of the PROFIT core transformation against a NumPy reference and its contract."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import profit_optax
from profit_optax import ProfitState
from profit_optax._src.readers import find_state
from tests.library.numpy_ref_profit import NumpyAdam, NumpySGD, profit_numpy

# ---------------------------------------------------------------------------
# Two stochastic problems, each defined once and used by both implementations.


def quadratic_problem(dtype):
    """f(θ; b) = ½ Σ_k (θ_k − c_{b,k})ᵀ H_k (θ_k − c_{b,k}): anisotropic, per-batch centres."""
    rng = np.random.default_rng(0)
    h = {"a": np.diag(np.linspace(0.5, 3.0, 4)), "b": np.diag([2.0, 0.3])}
    centres = [{"a": rng.normal(size=4), "b": rng.normal(size=2)} for _ in range(64)]  # batches
    theta0 = {"a": rng.normal(size=4).astype(dtype), "b": rng.normal(size=2).astype(dtype)}

    def loss(theta, c):
        return sum(
            0.5 * (theta[k] - c[k]) @ jnp.asarray(h[k], theta[k].dtype) @ (theta[k] - c[k])
            for k in theta
        )

    def grad_at(theta, k):
        c = {n: jnp.asarray(v, theta[n].dtype) for n, v in centres[k].items()}
        return jax.grad(loss)(theta, c)

    return theta0, grad_at


def mlp_problem(dtype):
    """A 2-16-1 tanh MLP on mini-batches of a 1-D regression task."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64 * 8, 2))
    y = np.sin(x[:, :1] * 2) + 0.5 * x[:, 1:]
    theta0 = {
        "w1": (rng.normal(size=(2, 16)) / np.sqrt(2)).astype(dtype),
        "b1": np.zeros(16, dtype),
        "w2": (rng.normal(size=(16, 1)) / 4).astype(dtype),
        "b2": np.zeros(1, dtype),
    }

    def loss(theta, xb, yb):
        h = jnp.tanh(xb @ theta["w1"] + theta["b1"])
        return jnp.mean((h @ theta["w2"] + theta["b2"] - yb) ** 2)

    def grad_at(theta, k):  # k may be traced (one-call mode's grad_fn)
        dt = theta["w1"].dtype
        xb = jax.lax.dynamic_slice_in_dim(jnp.asarray(x, dt), 8 * k, 8)
        yb = jax.lax.dynamic_slice_in_dim(jnp.asarray(y, dt), 8 * k, 8)
        return jax.grad(loss)(theta, xb, yb)

    return theta0, grad_at


PROBLEMS = {"quadratic": quadratic_problem, "mlp": mlp_problem}


def run_optax(tx, theta0, grad_at, n_calls, jit=True):
    params = jax.tree.map(jnp.asarray, theta0)
    state = tx.init(params)
    update = jax.jit(tx.update) if jit else tx.update
    history = []
    for k in range(n_calls):
        grads = grad_at(params, k)
        updates, state = update(grads, state, params)
        params = optax.apply_updates(params, updates)
        history.append(params)
    return history, state


def donated_step(tx, shape=(256, 128)):
    """The compiled ``update + apply_updates`` step of ``tx`` on a (``shape``-kernel, bias)
    tree, with params and state donated; the gradient is computed inside the step."""
    params = {"w": jnp.zeros(shape), "b": jnp.zeros(shape[1:])}

    def step(p, s, x):
        g = jax.tree.map(lambda a: jnp.sin(a + x), p)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    return jax.jit(step, donate_argnums=(0, 1)).lower(params, tx.init(params), 1.0).compile()


_CASES = [
    (problem, n_ref, main, dtype, "global")
    for problem in ("quadratic", "mlp")
    for n_ref in (1, 3)
    for main in ("sgd", "adam")
    for dtype in ("float64", "float32")
] + [
    (problem, 1, main, "float64", "per_tensor") for problem in PROBLEMS for main in ("sgd", "adam")
]


@pytest.mark.parametrize(("problem", "n_ref", "main", "dtype", "projection"), _CASES)
def test_matches_numpy_reference(problem, n_ref, main, dtype, projection):
    lr_main, lr_ref, n_cycles = (0.05, 0.005, 10) if main == "sgd" else (0.01, 0.002, 10)
    with jax.enable_x64(dtype == "float64"):
        theta0, grad_at = PROBLEMS[problem](dtype)
        np_grad = lambda th, k: {n: np.asarray(v) for n, v in grad_at(th, k).items()}
        np_main = NumpySGD(lr_main) if main == "sgd" else NumpyAdam(lr_main)
        expected = profit_numpy(
            theta0,
            np_grad,
            np_main,
            NumpySGD(lr_ref),
            n_ref=n_ref,
            n_cycles=n_cycles,
            projection=projection,
        )
        opt = optax.sgd(lr_main) if main == "sgd" else optax.adam(lr_main)
        tx = profit_optax.profit(opt, optax.sgd(lr_ref), n_ref=n_ref, projection=projection)
        history, _ = run_optax(tx, theta0, grad_at, n_cycles * (n_ref + 1))
        got = history[n_ref :: n_ref + 1]  # parameters after each main call
        assert len(got) == len(expected) == n_cycles
        rtol = 1e-6 if dtype == "float64" else 1e-5
        for cycle, (g, e) in enumerate(zip(got, expected, strict=True)):
            for k in e:
                assert g[k].dtype == np.dtype(dtype)
                np.testing.assert_allclose(
                    np.asarray(g[k]), e[k], rtol=rtol, atol=rtol, err_msg=f"cycle {cycle} {k}"
                )
        # the reference makes a difference: the conflicts really happened
        assert any(
            not np.allclose(
                e["w1" if problem == "mlp" else "a"], b["w1" if problem == "mlp" else "a"]
            )
            for e, b in zip(expected, [theta0] * n_cycles, strict=True)
        )


def test_reference_projection_changes_the_trajectory():
    """Sanity of the test problems: PROFIT differs from bare SGD fed the same batches."""
    theta0, grad_at = mlp_problem("float32")
    tx = profit_optax.profit(optax.sgd(0.05), optax.sgd(0.005))
    hist, _state = run_optax(tx, theta0, grad_at, 20)
    bare, _ = run_optax(optax.sgd(0.05), theta0, lambda p, k: grad_at(p, 2 * k + 1), 10)
    assert not np.allclose(hist[-1]["w1"], bare[-1]["w1"], atol=1e-6)


# ---------------------------------------------------------------------------
# Geometry.


def _one_cycle(g_ref, g_main, lr_ref=0.1, lr_main=1.0, **kw):
    params = {"w": jnp.array([1.0, 2.0, -1.0])}
    tx = profit_optax.profit(optax.sgd(lr_main), optax.sgd(lr_ref), **kw)
    state = tx.init(params)
    upd, state = tx.update({"w": jnp.asarray(g_ref)}, state, params)
    probe = optax.apply_updates(params, upd)
    delta = probe["w"] - params["w"]
    upd, state = tx.update({"w": jnp.asarray(g_main)}, state, probe)
    new = optax.apply_updates(probe, upd)
    main_direction = -(new["w"] - params["w"]) / lr_main  # the gradient SGD applied
    return delta, main_direction, state


def test_conflicting_step_is_orthogonal_to_delta():
    delta, applied, state = _one_cycle([1.0, 0.5, 0.0], [2.0, -1.0, 3.0])
    # Δ = −0.1 g_ref; ⟨g, Δ⟩ = −0.1 (2 − 0.5) < 0: conflict
    assert float(state.diagnostics.conflict) == 1.0
    assert abs(float(jnp.vdot(applied, delta))) < 1e-6 * float(jnp.linalg.norm(applied))
    g = np.array([2.0, -1.0, 3.0])
    d = np.asarray(delta)
    np.testing.assert_allclose(applied, g - (g @ d) / (d @ d) * d, rtol=1e-5)
    np.testing.assert_allclose(
        float(state.diagnostics.removed_norm), abs(g @ d) / np.linalg.norm(d), rtol=1e-5
    )
    np.testing.assert_allclose(
        float(state.diagnostics.cos_g_delta),
        (g @ d) / np.linalg.norm(g) / np.linalg.norm(d),
        rtol=1e-5,
    )


def test_no_conflict_passes_gradient_unchanged():
    _, applied, state = _one_cycle([1.0, 0.5, 0.0], [-2.0, 1.0, 3.0])  # ⟨g, Δ⟩ > 0
    assert float(state.diagnostics.conflict) == 0.0
    np.testing.assert_allclose(applied, [-2.0, 1.0, 3.0], rtol=1e-6)
    assert float(state.diagnostics.removed_norm) == 0.0


def test_zero_delta_gives_no_projection_and_no_nan():
    _, applied, state = _one_cycle([1.0, 0.5, 0.0], [2.0, -1.0, 3.0], lr_ref=0.0)
    np.testing.assert_allclose(applied, [2.0, -1.0, 3.0], rtol=1e-6)
    for v in jax.tree.leaves(state):
        assert np.all(np.isfinite(np.asarray(v)))
    assert float(state.diagnostics.delta_norm) == 0.0
    assert float(state.diagnostics.cos_g_delta) == 0.0


def test_per_tensor_projection_projects_each_leaf():
    params = {"a": jnp.array([1.0, 0.0]), "b": jnp.array([0.0, 1.0])}
    tx = profit_optax.profit(optax.sgd(1.0), optax.sgd(1.0), projection="per_tensor")
    state = tx.init(params)
    upd, state = tx.update({"a": jnp.array([1.0, 0.0]), "b": jnp.array([0.0, 1.0])}, state, params)
    probe = optax.apply_updates(params, upd)  # Δ = (−1, 0), (0, −1)
    g = {"a": jnp.array([1.0, 1.0]), "b": jnp.array([-1.0, -1.0])}  # a conflicts; b does not
    upd, state = tx.update(g, state, probe)
    new = optax.apply_updates(probe, upd)
    np.testing.assert_allclose(new["a"], [1.0, -1.0])  # component along Δ_a removed
    np.testing.assert_allclose(new["b"], [1.0, 2.0])  # unchanged SGD step
    assert float(state.diagnostics.conflict) == 0.5


# ---------------------------------------------------------------------------
# State contract, jit, memory, dtypes.


def _leaf_bytes(tree):
    return sum(np.asarray(x).nbytes for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_state_holds_one_parameter_sized_buffer(dtype):
    params = {"w": jnp.zeros((64, 32), dtype), "b": jnp.zeros(32, dtype)}
    main, ref = optax.adam(1e-3), optax.sgd(1e-4, momentum=0.9)
    state = profit_optax.profit(main, ref).init(params)
    extra = _leaf_bytes(state) - _leaf_bytes(main.init(params)) - _leaf_bytes(ref.init(params))
    param_bytes = _leaf_bytes(params)
    assert param_bytes <= extra <= param_bytes + 64  # θ_ref plus a few scalars
    assert all(d.dtype == dtype for d in jax.tree.leaves(state.theta_ref))
    one_call = profit_optax.profit(main, ref, one_call=True).init(params)
    extra = _leaf_bytes(one_call) - _leaf_bytes(main.init(params)) - _leaf_bytes(ref.init(params))
    assert extra <= 64  # no parameter-sized buffer at all


@pytest.mark.parametrize("n_ref", [1, 2])
def test_state_structure_and_dtypes_fixed_and_single_trace(n_ref):
    theta0, _grad_at = mlp_problem("float32")
    tx = profit_optax.profit(optax.adamw(1e-3), optax.sgd(1e-4), n_ref=n_ref)
    traces = []

    @jax.jit
    def step(params, state, k):
        traces.append(1)
        grads = jax.grad(lambda p: jnp.sum(p["w1"] ** 2) + jnp.sum(p["w2"]) * k)(params)
        updates, state = tx.update(grads, state, params)
        return optax.apply_updates(params, updates), state

    params = jax.tree.map(jnp.asarray, theta0)
    state = tx.init(params)
    spec = jax.tree.map(lambda x: (x.shape, x.dtype), state)
    treedef = jax.tree.structure(state)
    for k in range(10):
        params, state = step(params, state, jnp.float32(k))
        assert jax.tree.structure(state) == treedef
        assert jax.tree.map(lambda x: (x.shape, x.dtype), state) == spec
    assert len(traces) == 1
    assert int(state.count) == 10 % (n_ref + 1)


def test_params_and_state_can_both_be_donated():
    """init must not alias params inside the state (XLA refuses to donate a buffer twice)."""
    theta0, _grad_at = mlp_problem("float32")
    tx = profit_optax.profit(optax.adam(1e-2), optax.sgd(1e-3))

    @jax.jit
    def grad_step(params, state, k):
        updates, state = tx.update(grad_at_fixed(params), state, params)
        return optax.apply_updates(params, updates), state

    step = jax.jit(grad_step, donate_argnums=(0, 1))
    grad_at_fixed = lambda p: jax.tree.map(lambda x: jnp.sin(x) * 0.1, p)
    params = jax.tree.map(jnp.asarray, theta0)
    state = tx.init(params)
    for k in range(4):
        params, state = step(params, state, k)
    assert all(np.all(np.isfinite(np.asarray(x))) for x in jax.tree.leaves(params))


def test_updates_keep_parameter_dtypes():
    params = {"w": jnp.ones(4, jnp.bfloat16), "b": jnp.ones(2, jnp.float32)}
    grads = {"w": jnp.ones(4, jnp.bfloat16), "b": jnp.ones(2, jnp.float32)}
    tx = profit_optax.profit(optax.adam(1e-3), optax.sgd(1e-4))
    state = tx.init(params)
    for _ in range(4):
        upd, state = jax.jit(tx.update)(grads, state, params)
        assert upd["w"].dtype == jnp.bfloat16 and upd["b"].dtype == jnp.float32
        params = optax.apply_updates(params, upd)
        assert params["w"].dtype == jnp.bfloat16


def test_bf16_reference_step_below_resolution_does_not_drift():
    """The reference step is swallowed by bf16 rounding: θ must come back exactly."""
    vals = jnp.array([1.0, 3.0, -2.0, 0.01, 1e-3, -5e-4, 0.0, 100.0], jnp.bfloat16)
    params = {"w": vals}
    tx = profit_optax.profit(optax.sgd(0.0), optax.sgd(3e-4))  # main step does nothing
    state = tx.init(params)
    update = jax.jit(tx.update)
    grads = {"w": jnp.ones_like(vals)}
    for _ in range(50):
        upd, state = update(grads, state, params)
        params = optax.apply_updates(params, upd)
    assert int(state.count) == 0
    np.testing.assert_array_equal(np.asarray(params["w"]), np.asarray(vals))


def test_bf16_invisible_reference_step_leaves_no_trace():
    """A reference step swallowed by bf16 rounding must leave the trajectory bit-identical
    to a zero reference step (both jitted: XLA may skip bf16 intermediate rounding inside
    fusions, so eager bare SGD is not a bit-exact comparison)."""
    vals = jnp.linspace(-2.0, 4.0, 16, dtype=jnp.bfloat16)
    loss = lambda p: jnp.sum(jnp.sin(p["w"].astype(jnp.float32)))

    def run(ref_lr):
        tx = profit_optax.profit(optax.sgd(0.05), optax.sgd(ref_lr))
        update = jax.jit(tx.update)
        p, s = {"w": vals}, tx.init({"w": vals})
        for _ in range(40):
            g = jax.tree.map(lambda x: x.astype(jnp.bfloat16), jax.grad(loss)(p))
            u, s = update(g, s, p)
            p = optax.apply_updates(p, u)
        return np.asarray(p["w"], np.float32)

    invisible, zero = run(1e-7), run(0.0)
    np.testing.assert_array_equal(invisible, zero)
    assert not np.array_equal(zero, np.asarray(vals, np.float32))  # the main steps did move


def test_reductions_accumulate_in_float32():
    """bf16 sums of 4096 squares would lose ‖Δ‖; the diagnostics must not."""
    n = 4096
    params = {"w": jnp.ones(n, jnp.bfloat16)}
    tx = profit_optax.profit(optax.sgd(0.0), optax.sgd(1.0))
    state = tx.init(params)
    g = {"w": jnp.full(n, 0.125, jnp.bfloat16)}
    upd, state = tx.update(g, state, params)
    upd, state = tx.update(g, state, optax.apply_updates(params, upd))
    np.testing.assert_allclose(float(state.diagnostics.delta_norm), 0.125 * np.sqrt(n), rtol=1e-3)
    np.testing.assert_allclose(float(state.diagnostics.grad_norm), 0.125 * np.sqrt(n), rtol=1e-3)


@pytest.mark.parametrize("n", [1_000_003, 5000, 7])
def test_projection_sums_are_accurate_on_large_leaves(n):
    """The projection sums must be as accurate as a float64 dot (rtol 1e-5)."""
    from profit_optax._src.numerics import projection_sums

    rng = np.random.default_rng(0)
    g = rng.normal(size=n).astype(np.float32)
    d = (rng.normal(size=n) * 1e-3 + 0.01).astype(np.float32)
    got = np.asarray(jax.jit(projection_sums)({"x": jnp.asarray(g)}, {"x": jnp.asarray(d)}))[0]
    g64, d64 = g.astype(np.float64), d.astype(np.float64)
    np.testing.assert_allclose(got, [g64 @ d64, d64 @ d64, g64 @ g64], rtol=1e-5)


@pytest.mark.parametrize("n", [1_000_003, 7])
def test_projection_sums_between_are_accurate(n):
    """⟨g, a−b⟩, ‖a−b‖², ‖g‖² from (g, a, b) without materialising a−b must be as
    accurate as float64 dots (rtol 1e-5) when a−b is small against a."""
    from profit_optax._src.numerics import projection_sums_between

    rng = np.random.default_rng(1)
    g = rng.normal(size=n).astype(np.float32)
    a = rng.normal(size=n).astype(np.float32)
    b = (a + rng.normal(size=n) * 1e-3).astype(np.float32)
    args = ({"x": jnp.asarray(g)}, {"x": jnp.asarray(a)}, {"x": jnp.asarray(b)})
    got = np.asarray(jax.jit(projection_sums_between)(*args))[0]
    g64, d64 = g.astype(np.float64), a.astype(np.float64) - b.astype(np.float64)
    np.testing.assert_allclose(got, [g64 @ d64, d64 @ d64, g64 @ g64], rtol=1e-5)


@pytest.mark.parametrize("n", [1_000_003, 7])
def test_projection_sums_between_in_bfloat16_are_exact_float32_sums(n):
    """bf16 (g, a, b): the sums of the float32 upcasts, wherever the upcasts are taken (on
    CPU each reduction reads its inputs through a barrier of its own)."""
    from profit_optax._src.numerics import projection_sums_between

    rng = np.random.default_rng(2)
    g, a = (jnp.asarray(rng.normal(size=n), jnp.bfloat16) for _ in range(2))
    b = (a.astype(jnp.float32) + jnp.asarray(rng.normal(size=n) * 1e-2)).astype(jnp.bfloat16)
    got = np.asarray(jax.jit(projection_sums_between)({"x": g}, {"x": a}, {"x": b}))[0]
    g64, a64, b64 = (np.asarray(x.astype(jnp.float32), np.float64) for x in (g, a, b))
    d64 = a64 - b64
    np.testing.assert_allclose(got, [g64 @ d64, d64 @ d64, g64 @ g64], rtol=1e-5)


def test_barriers_only_in_the_cpu_programs_of_half_precision_sums():
    """``own_upcasts_on_cpu`` (the projection sums, the automatic step's length, lean mode's
    norms): the barriers are lowered for CPU only, and only where an input is upcast."""
    from jax import export

    from profit_optax._src.numerics import projection_sums_between, sumsq, sumsq_between

    def lowered(fn, dtype, platform, n_args):
        x = {"a": jnp.ones((64, 32), dtype)}
        return export.export(jax.jit(fn), platforms=(platform,))(*[x] * n_args).mlir_module()

    for fn, n_args in ((projection_sums_between, 3), (sumsq_between, 2), (sumsq, 1)):
        assert "optimization_barrier" in lowered(fn, jnp.bfloat16, "cpu", n_args)
        for platform in ("cuda", "tpu"):
            assert "optimization_barrier" not in lowered(fn, jnp.bfloat16, platform, n_args)
        assert "optimization_barrier" not in lowered(fn, jnp.float32, "cpu", n_args)


def test_ref_params_recovers_theta_ref_mid_cycle():
    theta0, grad_at = mlp_problem("float32")
    tx = profit_optax.profit(optax.adam(1e-2), optax.sgd(1e-2), n_ref=3)
    params = jax.tree.map(jnp.asarray, theta0)
    state = tx.init(params)
    for k in range(3):
        upd, state = tx.update(grad_at(params, k), state, params)
        params = optax.apply_updates(params, upd)
        assert not np.allclose(params["w1"], theta0["w1"])
        recovered = profit_optax.ref_params(params, state)
        for name in theta0:
            np.testing.assert_array_equal(np.asarray(recovered[name]), theta0[name])
    chained = optax.chain(optax.clip_by_global_norm(1.0), tx)
    cstate = chained.init(params)
    assert find_state(cstate, ProfitState).count.shape == ()


# ---------------------------------------------------------------------------
# Composition with Optax wrappers and Flax.


def test_inside_chain_after_clipping():
    theta0, grad_at = mlp_problem("float32")
    tx = optax.chain(
        optax.clip_by_global_norm(0.01), profit_optax.profit(optax.sgd(0.1), optax.sgd(0.01))
    )
    history, _state = run_optax(tx, theta0, grad_at, 8)
    # the same with clipped gradients fed to bare PROFIT
    inner = profit_optax.profit(optax.sgd(0.1), optax.sgd(0.01))

    def clipped_grad(p, k):
        g = grad_at(p, k)
        norm = optax.tree.norm(g)
        return jax.tree.map(lambda x: x * jnp.minimum(1.0, 0.01 / norm), g)

    expected, _ = run_optax(inner, theta0, clipped_grad, 8)
    for k in theta0:
        np.testing.assert_allclose(history[-1][k], expected[-1][k], rtol=1e-6, atol=1e-7)


def test_inject_hyperparams_schedules_on_both_learning_rates():
    theta0, grad_at = mlp_problem("float32")
    main_sched = optax.linear_schedule(0.05, 0.0, 6)
    ref_sched = optax.linear_schedule(0.01, 0.0, 6)
    tx = profit_optax.profit(
        optax.inject_hyperparams(optax.sgd)(learning_rate=main_sched),
        optax.inject_hyperparams(optax.sgd)(learning_rate=ref_sched),
    )
    history, state = run_optax(tx, theta0, grad_at, 12)
    # each optimizer's schedule advances only on its own calls: 6 each
    assert int(state.main_state.count) == 6
    assert int(state.ref_state.count) == 6
    # the stored hyperparameter is the one used by the last (6th) call of each: step 5
    assert float(state.main_state.hyperparams["learning_rate"]) == pytest.approx(0.05 / 6)
    assert float(state.ref_state.hyperparams["learning_rate"]) == pytest.approx(0.01 / 6)
    # lr 0 at the end: the last two cycles are at lr ≈ small; compare with the fixed-lr run
    fixed, _ = run_optax(profit_optax.profit(optax.sgd(0.05), optax.sgd(0.01)), theta0, grad_at, 12)
    assert not np.allclose(history[-1]["w1"], fixed[-1]["w1"])


def test_composes_with_multisteps_masked_and_apply_if_finite():
    theta0, grad_at = mlp_problem("float32")
    base = profit_optax.profit(optax.adam(1e-2), optax.sgd(1e-3))
    multi = optax.MultiSteps(base, every_k_schedule=2)
    hist, state = run_optax(multi, theta0, grad_at, 8)
    assert int(state.inner_opt_state.count) == 0  # 4 inner calls = 2 full cycles
    masked = optax.masked(base, {"w1": True, "b1": True, "w2": False, "b2": False})
    hist, _ = run_optax(masked, theta0, grad_at, 4)
    assert not np.allclose(hist[-1]["w1"], theta0["w1"])
    guarded = optax.apply_if_finite(base, max_consecutive_errors=3)
    hist, _ = run_optax(guarded, theta0, grad_at, 4)
    assert all(np.all(np.isfinite(v)) for v in hist[-1].values())


def test_trains_flax_nnx_model_under_jit():
    from flax import nnx

    class Net(nnx.Module):
        def __init__(self, rngs):
            self.l1 = nnx.Linear(2, 16, rngs=rngs)
            self.l2 = nnx.Linear(16, 1, rngs=rngs)

        def __call__(self, x):
            return self.l2(jnp.tanh(self.l1(x)))

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(256, 2)), jnp.float32)
    y = jnp.sin(2 * x[:, :1]) + 0.5 * x[:, 1:]
    model = Net(nnx.Rngs(0))
    optimizer = nnx.Optimizer(
        model, profit_optax.profit(optax.adam(1e-2), optax.sgd(1e-3)), wrt=nnx.Param
    )

    @nnx.jit
    def step(model, optimizer, xb, yb):
        loss, grads = nnx.value_and_grad(lambda m: jnp.mean((m(xb) - yb) ** 2))(model)
        optimizer.update(model, grads)
        return loss

    full_loss = lambda: float(jnp.mean((model(x) - y) ** 2))
    before = full_loss()
    for k in range(200):
        sl = slice((k % 16) * 16, (k % 16) * 16 + 16)
        step(model, optimizer, x[sl], y[sl])
    assert full_loss() < 0.5 * before


def test_trains_flax_linen_train_state_under_jit():
    import flax.linen as nn
    from flax.training import train_state

    class Net(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.Dense(1)(jnp.tanh(nn.Dense(16)(x)))

    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(256, 2)), jnp.float32)
    y = jnp.sin(2 * x[:, :1]) + 0.5 * x[:, 1:]
    net = Net()
    state = train_state.TrainState.create(
        apply_fn=net.apply,
        params=net.init(jax.random.key(0), x[:1]),
        tx=profit_optax.profit(optax.adam(1e-2), optax.sgd(1e-3)),
    )

    @jax.jit
    def step(state, xb, yb):
        grads = jax.grad(lambda p: jnp.mean((state.apply_fn(p, xb) - yb) ** 2))(state.params)
        return state.apply_gradients(grads=grads)

    full_loss = lambda s: float(jnp.mean((net.apply(s.params, x) - y) ** 2))
    before = full_loss(state)
    for k in range(200):
        sl = slice((k % 16) * 16, (k % 16) * 16 + 16)
        state = step(state, x[sl], y[sl])
    assert full_loss(state) < 0.7 * before


# ---------------------------------------------------------------------------
# One-call mode.


@pytest.mark.parametrize("n_ref", [1, 3])
def test_one_call_mode_equals_alternating_mode(n_ref):
    theta0, grad_at = mlp_problem("float32")
    n_cycles = 5
    alt = profit_optax.profit(optax.adam(1e-2), optax.sgd(5e-3), n_ref=n_ref)
    hist, _ = run_optax(alt, theta0, grad_at, n_cycles * (n_ref + 1))

    one = profit_optax.profit(optax.adam(1e-2), optax.sgd(5e-3), n_ref=n_ref, one_call=True)
    params = jax.tree.map(jnp.asarray, theta0)
    state = one.init(params)

    @jax.jit
    def step(params, state, cycle):
        base = cycle * (n_ref + 1)
        grad_fn = lambda p, i: grad_at(p, base + 1 + i)
        updates, state = one.update(grad_at(params, base), state, params, grad_fn=grad_fn)
        return optax.apply_updates(params, updates), state

    for c in range(n_cycles):
        params, state = step(params, state, c)
        expected = hist[(c + 1) * (n_ref + 1) - 1]
        for k in theta0:
            np.testing.assert_allclose(params[k], expected[k], rtol=1e-5, atol=1e-6)
    assert state.theta_ref is None


@pytest.mark.parametrize("n_ref", [1, 3])
def test_one_call_mode_unrolls_the_reference_steps(n_ref):
    # The cycle is unrolled at trace time (no `while` in the program: XLA:CPU runs
    # convolutions inside a loop ~15x slower), and grad_fn sees i = 0 .. n_ref - 1 as ints.
    tx = profit_optax.profit(optax.adam(1e-2), optax.sgd(5e-3), n_ref=n_ref, one_call=True)
    params = {"w": jnp.ones((4, 3)), "b": jnp.zeros(3)}
    seen = []

    def grad_fn(p, i):
        seen.append(i)
        return jax.tree.map(lambda a: a * 0.5 + i, p)

    def step(params, state):
        return tx.update(params, state, params, grad_fn=grad_fn)

    jaxpr = str(jax.make_jaxpr(step)(params, tx.init(params)))
    assert "while[" not in jaxpr
    assert seen == list(range(n_ref)) and all(type(i) is int for i in seen)


def test_one_call_mode_requires_grad_fn():
    tx = profit_optax.profit(optax.sgd(0.1), optax.sgd(0.01), one_call=True)
    params = {"w": jnp.ones(2)}
    with pytest.raises(ValueError, match="grad_fn"):
        tx.update(params, tx.init(params), params)


# ---------------------------------------------------------------------------
# Non-finite gradients.


@pytest.mark.parametrize("bad_call", [0, 1, 2])  # first reference, second reference, main
def test_nonfinite_gradient_skips_the_call_and_keeps_state(bad_call):
    theta0, grad_at = mlp_problem("float32")
    tx = profit_optax.profit(optax.adam(1e-2), optax.sgd(1e-2, momentum=0.9), n_ref=2)
    update = jax.jit(tx.update)
    params = jax.tree.map(jnp.asarray, theta0)
    state = tx.init(params)
    clean_params, clean_state = params, state
    for k in range(9):
        if k == 3 + bad_call:
            g = grad_at(params, k)
            g = {**g, "w1": g["w1"].at[0, 0].set(jnp.nan), "b2": g["b2"].at[0].set(jnp.inf)}
            before_state = state
            upd, state = update(g, state, params)
            assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(upd))
            # nothing but the counter moved (θ_ref is documented as stale and unused while
            # count == 0; a skipped first call re-saves it from the same params)
            ignore = {"diagnostics": None}
            if bad_call == 0:
                ignore["theta_ref"] = None
            for a, b in zip(
                jax.tree.leaves(before_state._replace(**ignore)),
                jax.tree.leaves(state._replace(**ignore)),
                strict=True,
            ):
                np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
            assert int(state.diagnostics.nonfinite_count) == 1
        upd, state = update(grad_at(params, k), state, params)
        params = optax.apply_updates(params, upd)
        cu, clean_state = update(grad_at(clean_params, k), clean_state, clean_params)
        clean_params = optax.apply_updates(clean_params, cu)
    # the skipped call changed nothing: the trajectory equals the clean one
    for k in theta0:
        np.testing.assert_array_equal(np.asarray(params[k]), np.asarray(clean_params[k]))


# ---------------------------------------------------------------------------
# Errors.


def test_rejects_bad_arguments_with_clear_messages():
    with pytest.raises(ValueError, match="n_ref"):
        profit_optax.profit(optax.sgd(0.1), optax.sgd(0.01), n_ref=0)
    with pytest.raises(ValueError, match="n_ref"):
        profit_optax.profit(optax.sgd(0.1), optax.sgd(0.01), n_ref=1.5)
    with pytest.raises(TypeError, match="optimizer"):
        profit_optax.profit(optax.adam, optax.sgd(0.01))
    with pytest.raises(TypeError, match="reference_optimizer"):
        profit_optax.profit(optax.sgd(0.1), 1e-3)
    with pytest.raises(ValueError, match="projection"):
        profit_optax.profit(optax.sgd(0.1), optax.sgd(0.01), projection="layerwise")
    with pytest.raises(ValueError, match="ref_scale"):
        profit_optax.profit(optax.sgd(0.1), ref_scale=-1.0)


def test_rejects_bad_update_inputs_with_clear_messages():
    tx = profit_optax.profit(optax.sgd(0.1), optax.sgd(0.01))
    params = {"w": jnp.ones(3), "b": jnp.ones(2)}
    state = tx.init(params)
    with pytest.raises(ValueError, match="`params` is required"):
        tx.update(params, state)
    with pytest.raises(ValueError, match=r"trees? .*differ"):
        tx.update({"w": jnp.ones(3)}, state, params)
    with pytest.raises(ValueError, match="shapes differ at \\['b'\\]"):
        tx.update({"w": jnp.ones(3), "b": jnp.ones(4)}, state, params)
    with pytest.raises(ValueError, match="ProfitState"):
        profit_optax.ref_params(params, optax.sgd(0.1).init(params))


def test_state_is_documented_namedtuple():
    assert ProfitState._fields == ("count", "theta_ref", "main_state", "ref_state", "diagnostics")
    assert "θ_ref" in ProfitState.__doc__


def test_ref_params_and_diagnostics_accept_nnx_optimizer_states():
    from flax import nnx

    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    optimizer = nnx.Optimizer(
        model, profit_optax.profit(optax.adam(1e-2), optax.sgd(1e-2)), wrt=nnx.Param
    )
    before = nnx.as_pure(nnx.state(model, nnx.Param))
    grads = nnx.grad(lambda m: jnp.sum(m(jnp.ones((4, 3))) ** 2))(model)
    optimizer.update(model, grads)  # a reference call: the model is at the probe point
    recovered = profit_optax.ref_params(nnx.state(model, nnx.Param), optimizer.opt_state)
    for a, b in zip(jax.tree.leaves(recovered), jax.tree.leaves(before), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    diag = profit_optax.diagnostics(optimizer.opt_state)
    assert isinstance(diag["conflict"], jax.Array)
