"""Non-finite gradients in compositions: the run equals the run that skipped that batch.

tests/library/test_profit.py covers bare PROFIT (n_ref=2, re-feeding the same batch). Here:
``optax.apply_if_finite`` around PROFIT, clipping before it, the automatic reference
step, one-call mode with a NaN from ``grad_fn``, ``warmup_then`` and the lean mode;
a NaN/Inf gradient in a reference call or in a main call, with n_ref = 1 and 2. The
bad batch is *dropped*: the run with the bad call must equal, bit for bit, the run
that never saw it, and the model θ_ref, PROFIT's state and the optimizers' states
must be unchanged by the bad call.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import profit_optax
from profit_optax import ProfitState, profit_lean, ref_params, warmup_then
from profit_optax._src.readers import find_state

N_BATCHES = 9
X = jnp.asarray(np.random.default_rng(5).normal(size=(N_BATCHES, 8, 2)), jnp.float32)
Y = jnp.sin(2 * X[..., :1]) + 0.5 * X[..., 1:]
THETA0 = {
    "w1": jnp.asarray(np.random.default_rng(6).normal(size=(2, 16)) / 2, jnp.float32),
    "b1": jnp.zeros(16, jnp.float32),
    "w2": jnp.asarray(np.random.default_rng(7).normal(size=(16, 1)) / 4, jnp.float32),
    "b2": jnp.zeros(1, jnp.float32),
}


def _grad(p, k, poison):
    def loss(p):
        h = jnp.tanh(X[k] @ p["w1"] + p["b1"])
        return jnp.mean((h @ p["w2"] + p["b2"] - Y[k]) ** 2)

    g = jax.grad(loss)(p)
    bad = {**g, "w1": g["w1"].at[0, 0].set(jnp.nan), "b2": g["b2"].at[0].set(jnp.inf)}
    return jax.tree.map(lambda a, b: jnp.where(poison, b, a), g, bad)


def _exact(p, s):
    return profit_optax.ref_params(p, s)


def _make_step(tx, one_call=False):
    @jax.jit
    def step(params, state, k, poison):
        kw = {}
        if one_call:  # the reference probe's gradient is the next batch's, or NaN
            bad_probe, poison = poison, False
            kw["grad_fn"] = lambda p, i: _grad(p, (k + 1 + i) % N_BATCHES, bad_probe)
        updates, state = tx.update(_grad(params, k, poison), state, params, **kw)
        return optax.apply_updates(params, updates), state

    return step


def _run(tx, batches, poison_at=None, readout=_exact, one_call=False, step=None):
    """Runs the calls on ``batches``; returns params and readout after each call."""
    step = step or _make_step(tx, one_call)
    params, state = THETA0, tx.init(THETA0)
    out = []
    for j, k in enumerate(batches):
        before = state
        params, state = step(params, state, jnp.int32(k), jnp.asarray(j == poison_at))
        if j == poison_at:
            bad = (params, before, state)
        out.append((params, readout(params, state)))
    return out, (bad if poison_at is not None else None)


def _equal(a, b, msg=""):
    assert jax.tree.structure(a) == jax.tree.structure(b), msg
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=msg)


def _check_skip_equals_drop(tx, bad_call, readout=_exact, one_call=False, inner=None):
    """Call ``bad_call`` gets a poisoned batch; afterwards the run must equal the run that
    dropped that batch, and the bad call must leave the model and inner states unchanged."""
    batches = list(range(N_BATCHES))
    step = _make_step(tx, one_call)
    poisoned, (params_after, before, after) = _run(tx, batches, bad_call, readout, step=step)
    dropped, _ = _run(tx, [b for b in batches if b != bad_call], None, readout, step=step)
    # the bad call: no movement of the params or the model
    prev_params = poisoned[bad_call - 1][0] if bad_call else THETA0
    prev_model = poisoned[bad_call - 1][1] if bad_call else THETA0
    _equal(params_after, prev_params, "params moved on a non-finite gradient")
    _equal(poisoned[bad_call][1], prev_model, "θ_ref moved on a non-finite gradient")
    if inner is not None:  # the optimizers' states inside: unchanged
        for name, get in inner.items():
            _equal(get(before), get(after), f"{name} changed on a non-finite gradient")
    for a in jax.tree.leaves(after):
        assert np.all(np.isfinite(np.asarray(a, np.float64)))
    # then: the same trajectory as without that batch (params and model), bit for bit
    for j in range(bad_call + 1, N_BATCHES):
        _equal(poisoned[j][0], dropped[j - 1][0], f"params after call {j}")
        _equal(poisoned[j][1], dropped[j - 1][1], f"θ_ref after call {j}")


def _profit_inner(s):
    st = find_state(s, ProfitState)
    return (st.main_state, st.ref_state, st.count)


# bad_call: with n_ref=1 calls alternate ref(0), main(1), ref(2), main(3)...; with n_ref=2
# ref(0), ref(1), main(2), ref(3), ...
_PHASES = [(1, 2, "reference"), (1, 3, "main"), (2, 3, "first reference")]
_PHASES += [(2, 4, "second reference"), (2, 5, "main")]


@pytest.mark.parametrize(("n_ref", "bad_call", "phase"), _PHASES)
def test_apply_if_finite_around_profit(n_ref, bad_call, phase):
    del phase
    inner = profit_optax.profit(optax.adam(1e-2), optax.sgd(1e-2, momentum=0.9), n_ref=n_ref)
    tx = optax.apply_if_finite(inner, max_consecutive_errors=5)
    _check_skip_equals_drop(
        tx,
        bad_call,
        inner={
            "PROFIT state": lambda s: s.inner_state,
            "θ_ref buffer": lambda s: s.inner_state.theta_ref,
        },
    )


@pytest.mark.parametrize(("n_ref", "bad_call", "phase"), _PHASES)
def test_bare_profit_after_clipping_with_automatic_reference(n_ref, bad_call, phase):
    """clip_by_global_norm turns the whole gradient into NaN; PROFIT's own guard skips."""
    del phase
    tx = optax.chain(
        optax.clip_by_global_norm(1.0), profit_optax.profit(optax.adam(1e-2), n_ref=n_ref)
    )
    _check_skip_equals_drop(tx, bad_call, inner={"optimizer states": lambda s: _profit_inner(s)})


@pytest.mark.parametrize("n_ref", [1, 2])
@pytest.mark.parametrize("wrapped", [False, True], ids=["bare", "apply_if_finite"])
def test_one_call_mode_with_nan_from_grad_fn(n_ref, wrapped):
    inner = profit_optax.profit(optax.adam(1e-2), optax.sgd(1e-2), n_ref=n_ref, one_call=True)
    tx = optax.apply_if_finite(inner, 5) if wrapped else inner
    get = (lambda s: s.inner_state) if wrapped else (lambda s: s)
    # in one-call mode every call is a main step; a bad probe gradient must skip it
    _check_skip_equals_drop(
        tx,
        4,
        one_call=True,
        inner={"PROFIT state": lambda s: get(s)._replace(diagnostics=None)},
    )


@pytest.mark.slow
def test_nonfinite_during_warmup_and_after_the_switch():
    tx = optax.apply_if_finite(
        warmup_then(optax.adamw(1e-2), profit_optax.profit(optax.adam(1e-2), optax.sgd(1e-3)), 3),
        5,
    )
    for bad_call in (1, 4, 5):  # warm-up; first PROFIT reference call; first main call
        # a skipped call is not counted by warmup_then (apply_if_finite does not call it)
        _check_skip_equals_drop(tx, bad_call, inner={"optimizer states": lambda s: s.inner_state})


@pytest.mark.parametrize("wrapped", [False, True], ids=["bare", "apply_if_finite"])
def test_lean_mode_skips_nonfinite_gradients(wrapped):
    inner = profit_lean(optax.adam(1e-2), ref_scale=0.1)
    tx = optax.apply_if_finite(inner, 5) if wrapped else inner
    get = (lambda s: s.inner_state) if wrapped else (lambda s: s)
    _check_skip_equals_drop(
        tx,
        4,
        readout=ref_params,
        inner={
            "main state": lambda s: get(s).main_state,
            "scale": lambda s: get(s).scale,
        },
    )


def test_skips_are_counted_in_the_diagnostics():
    tx = profit_optax.profit(optax.adam(1e-2), optax.sgd(1e-2))
    _, (_, before, after) = _run(tx, range(4), poison_at=2)
    assert int(profit_optax.diagnostics(before)["nonfinite_count"]) == 0
    assert int(profit_optax.diagnostics(after)["nonfinite_count"]) == 1


def test_multisteps_with_skip_not_finite_around_profit():
    """Without `should_skip_update_fn` MultiSteps would accumulate the NaN; with
    `optax.skip_not_finite` the poisoned mini-step is dropped before PROFIT sees it."""
    inner = profit_optax.profit(optax.adam(1e-2), optax.sgd(1e-3))
    tx = optax.MultiSteps(inner, 2, should_skip_update_fn=optax.skip_not_finite)
    readout = lambda p, s: profit_optax.ref_params(p, s.inner_opt_state)
    _check_skip_equals_drop(
        tx, 3, readout=readout, inner={"PROFIT state": lambda s: s.inner_opt_state}
    )
