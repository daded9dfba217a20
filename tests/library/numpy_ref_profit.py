"""A plain NumPy implementation of PROFIT's Algorithm 1, for testing.

Written straight from the paper's pseudo-code (Chakravarthy et al., NeurIPS
2025, Algorithm 1) as explicit loops over copies of θ. It shares nothing with
the Optax implementation: parameters are dicts of NumPy arrays, optimizers are
written out by hand, and the cycle is a Python loop.

    for each PROFIT step:
        θ_ref ← θ
        repeat n_ref times: θ ← O_ref step on ∇L(θ; next batch)
        Δ ← θ − θ_ref
        g ← ∇L(θ; next batch)
        if ⟨g, Δ⟩ < 0: g ← g − ⟨g, Δ⟩ / ‖Δ‖² · Δ
        θ ← θ_ref
        θ ← O step with g
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Params = dict[str, np.ndarray]


class NumpySGD:
    """θ ← θ − lr · g (no momentum), in the parameters' dtype."""

    def __init__(self, lr: float):
        self.lr = lr

    def step(self, theta: Params, g: Params) -> Params:
        out = {}
        for k in theta:
            dt = theta[k].dtype
            out[k] = (theta[k] - np.asarray(self.lr, dt) * g[k].astype(dt)).astype(dt)
        return out


class NumpyAdam:
    """Adam with bias correction, eps outside the square root (as optax.adam)."""

    def __init__(self, lr: float, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8):
        self.lr, self.b1, self.b2, self.eps = lr, b1, b2, eps
        self.m: Params | None = None
        self.v: Params | None = None
        self.t = 0

    def step(self, theta: Params, g: Params) -> Params:
        if self.m is None:
            self.m = {k: np.zeros_like(v) for k, v in theta.items()}
            self.v = {k: np.zeros_like(v) for k, v in theta.items()}
        self.t += 1
        out = {}
        for k in theta:
            dt = theta[k].dtype
            gk = g[k].astype(dt)
            self.m[k] = (self.b1 * self.m[k] + (1 - self.b1) * gk).astype(dt)
            self.v[k] = (self.b2 * self.v[k] + (1 - self.b2) * gk * gk).astype(dt)
            m_hat = self.m[k] / (1 - self.b1**self.t)
            v_hat = self.v[k] / (1 - self.b2**self.t)
            out[k] = (theta[k] - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)).astype(dt)
        return out


def profit_numpy(
    theta0: Params,
    grad: Callable[[Params, int], Params],
    main,
    ref,
    *,
    n_ref: int,
    n_cycles: int,
    projection: str = "global",
) -> list[Params]:
    """Runs ``n_cycles`` PROFIT steps; ``grad(θ, k)`` uses the k-th batch.

    Returns θ after every main step (one entry per cycle).
    """
    theta = {k: v.copy() for k, v in theta0.items()}
    batch = 0
    history = []
    for _ in range(n_cycles):
        theta_ref = {k: v.copy() for k, v in theta.items()}
        for _ in range(n_ref):
            g = grad(theta, batch)
            batch += 1
            theta = ref.step(theta, g)
        delta = {k: theta[k] - theta_ref[k] for k in theta}
        g = grad(theta, batch)
        batch += 1
        g = {k: np.asarray(v, np.float64) for k, v in g.items()}
        d64 = {k: np.asarray(v, np.float64) for k, v in delta.items()}
        if projection == "global":
            dot = sum(float(np.sum(g[k] * d64[k])) for k in g)
            dd = sum(float(np.sum(d64[k] * d64[k])) for k in g)
            if dot < 0 and dd > 0:
                g = {k: g[k] - dot / dd * d64[k] for k in g}
        else:
            for k in g:
                dot = float(np.sum(g[k] * d64[k]))
                dd = float(np.sum(d64[k] * d64[k]))
                if dot < 0 and dd > 0:
                    g[k] = g[k] - dot / dd * d64[k]
        theta = {k: v.copy() for k, v in theta_ref.items()}
        g = {k: g[k].astype(theta[k].dtype) for k in g}
        theta = main.step(theta, g)
        history.append({k: v.copy() for k, v in theta.items()})
    return history
