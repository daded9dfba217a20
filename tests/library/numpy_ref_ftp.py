"""NumPy reference of FTP (Tian et al., NeurIPS 2023), written from the pseudo-code.

Independent of JAX and Optax: explicit Python loops over tensors and output rows,
mirroring the authors' ``util/FTP.py`` (``FTP.step``, ``SGDP.step``, ``AdamP.adam``)
with Flax layout (the output row is the last axis; 1-D and 0-D tensors take one
whole-tensor norm, as ``torch.sum(x, dim=())`` does). Used by tests/library/test_ftp.py.

Parameters are flat dicts ``name -> np.ndarray``.
"""

from __future__ import annotations

import math

import numpy as np

NORM_EPS = 1e-8
GAMMA_MIN = 1e-8


def row_slices(shape: tuple[int, ...]) -> list[tuple]:
    """Index tuples of each output row: ``x[..., j]`` for ndim >= 2, the whole tensor else."""
    if len(shape) >= 2:
        return [(Ellipsis, j) for j in range(shape[-1])]
    return [(Ellipsis,)]


class SGDNesterovRef:
    """PyTorch SGD with momentum and Nesterov (``SGDP.step`` without FTP); returns d_p."""

    def __init__(self, lr: float, momentum: float = 0.9):
        self.lr, self.momentum, self.buf = lr, momentum, {}

    def step(self, params: dict, grads: dict) -> dict:
        d = {}
        for name, g in grads.items():
            if name not in self.buf:
                self.buf[name] = g.copy()
            else:
                self.buf[name] = self.momentum * self.buf[name] + g
            d[name] = self.lr * (g + self.momentum * self.buf[name])
        return d


class AdamWRef:
    """PyTorch-style Adam with decoupled weight decay (``AdamP.adam`` without FTP); returns d_p."""

    def __init__(self, lr: float, b1=0.9, b2=0.999, eps=1e-8, weight_decay=0.0):
        self.lr, self.b1, self.b2, self.eps, self.wd = lr, b1, b2, eps, weight_decay
        self.m, self.v, self.step_count = {}, {}, 0

    def step(self, params: dict, grads: dict) -> dict:
        self.step_count += 1
        bc1 = 1 - self.b1**self.step_count
        bc2 = 1 - self.b2**self.step_count
        d = {}
        for name, g in grads.items():
            m = self.m.get(name, np.zeros_like(g))
            v = self.v.get(name, np.zeros_like(g))
            m = self.b1 * m + (1 - self.b1) * g
            v = self.b2 * v + (1 - self.b2) * g * g
            self.m[name], self.v[name] = m, v
            denom = np.sqrt(v) / math.sqrt(bc2) + self.eps
            d[name] = (self.lr / bc1) * m / denom + self.lr * self.wd * params[name]
        return d


class FTPRef:
    """The FTP step of ``util/FTP.py`` for a dict of tensors, with explicit loops.

    ``stats`` records, per step, whether some row was saturated (ratio clipped at 1),
    whether the radius hit its upper clip, and whether a positive hyper-gradient was
    annealed, so tests can check which branches a run exercised.
    """

    def __init__(self, anchors: dict, *, k=1.0, mu=1e-2, b1=0.9, b2=0.999, eps=1e-8,
                 gamma_init=1e-8, exclude=()):  # fmt: skip
        self.anchor = {n: np.array(a, copy=True) for n, a in anchors.items()}
        self.k, self.mu, self.b1, self.b2, self.eps = k, mu, b1, b2, eps
        self.gamma_init = gamma_init
        self.exclude = set(exclude)
        self.t = 1
        self.gamma, self.m, self.v, self.c_prev, self.scale_prev = {}, {}, {}, {}, {}
        self.stats = {"saturated_row": False, "upper_clip": False, "annealed": False}

    def step(self, params: dict, grads: dict, d: dict) -> dict:
        """One FTP step: ``params`` W_{t-1}, raw ``grads`` at W_{t-1}, inner step ``d`` (W - d)."""
        new = {}
        for name, w in params.items():
            if name in self.exclude:
                new[name] = w - d[name]
                continue
            pre = self.anchor[name]
            c = (w - d[name]) - pre
            rows = row_slices(c.shape)
            norms = [float(np.sum(np.abs(c[r]))) + NORM_EPS for r in rows]
            if self.t == 1:
                gamma = self.gamma_init
                self.m[name], self.v[name] = 0.0, 0.0
            else:
                c_prev, scale_prev = self.c_prev[name], self.scale_prev[name]
                hg = 0.0
                for r, s in zip(rows, scale_prev):
                    hg += float(np.sum(grads[name][r] * c_prev[r])) * s
                if hg > 0:
                    hg *= self.k
                    self.stats["annealed"] |= self.k != 1.0
                m = self.b1 * self.m[name] + (1 - self.b1) * hg
                v = self.b2 * self.v[name] + (1 - self.b2) * hg**2
                self.m[name], self.v[name] = m, v
                m_hat = m / (1 - self.b1**self.t)
                v_hat = v / (1 - self.b2**self.t)
                gamma = self.gamma[name] - self.mu * m_hat / (math.sqrt(v_hat) + self.eps)
                upper = max(norms)
                if gamma > upper:
                    self.stats["upper_clip"] = True
                gamma = min(max(gamma, GAMMA_MIN), upper)
            out = np.empty_like(c)
            scales = []
            for r, n in zip(rows, norms):
                ratio = gamma * (1.0 / n)
                if ratio >= 1.0:
                    self.stats["saturated_row"] = True
                ratio = min(max(ratio, 0.0), 1.0)
                out[r] = pre[r] + ratio * c[r]
                scales.append(1.0 / n)
            new[name] = out
            self.gamma[name] = gamma
            self.c_prev[name] = c
            self.scale_prev[name] = scales
        self.t += 1
        return new
