"""Synthetic "old" / "new" 2D regression data for the PROFIT toy experiment.

Both tasks regress a scalar target ``y = f(x)`` from a 2D input ``x``.

* **Old task** (pretraining): inputs from a Gaussian blob centred at ``old_center``; targets
  ``f_old(x) = sin(freq_1 * x_1) * cos(freq_2 * x_2)``.
* **New task** (fine-tuning): inputs from a blob shifted to ``new_center`` that overlaps the old
  one (the tasks are *proximal*); targets ``f_new(x) = f_old(x) + bump(x)``, where ``bump`` is a
  Gaussian bump of height ``bump_height`` centred in the part of the plane that only the new data
  covers. Where the old data lives, ``f_new ≈ f_old``, so a single network can fit both tasks;
  forgetting the old task is a property of the optimiser, not of the data.

Training labels carry i.i.d. Gaussian noise (``label_noise``); validation and test labels are the
noiseless function values, so the reported errors measure how well the *function* is recovered.
Everything is a pure function of the seed.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np
from ml_collections import ConfigDict


class Split(NamedTuple):
    """One split of one task: inputs ``x`` ``[n, 2]`` and targets ``y`` ``[n, 1]``."""

    x: np.ndarray
    y: np.ndarray


@dataclasses.dataclass(frozen=True)
class TaskData:
    """Train / validation / test splits of one task."""

    train: Split
    val: Split
    test: Split


@dataclasses.dataclass(frozen=True)
class ToyData:
    """The old (pretraining) and new (fine-tuning) tasks generated from one seed."""

    old: TaskData
    new: TaskData


def f_old(x: np.ndarray, cfg: ConfigDict) -> np.ndarray:
    """Old target function ``sin(freq_1 x_1) cos(freq_2 x_2)``; ``x`` has shape ``[..., 2]``."""
    return np.sin(cfg.freq[0] * x[..., 0]) * np.cos(cfg.freq[1] * x[..., 1])


def bump(x: np.ndarray, cfg: ConfigDict) -> np.ndarray:
    """Gaussian bump ``h exp(-|x - c|^2 / (2 w^2))`` that the new task adds to ``f_old``."""
    sq = np.sum((x - np.asarray(cfg.bump_center)) ** 2, axis=-1)
    return cfg.bump_height * np.exp(-sq / (2.0 * cfg.bump_width**2))


def f_new(x: np.ndarray, cfg: ConfigDict) -> np.ndarray:
    """New target function ``f_old + bump``."""
    return f_old(x, cfg) + bump(x, cfg)


def _sample_inputs(rng: np.random.Generator, center: tuple[float, float], std: float, n: int):
    return (np.asarray(center) + std * rng.standard_normal((n, 2))).astype(np.float32)


def _make_task(
    rng: np.random.Generator, cfg: ConfigDict, center: tuple[float, float], fn, n_train: int
) -> TaskData:
    def split(n: int, noisy: bool) -> Split:
        x = _sample_inputs(rng, center, cfg.input_std, n)
        y = fn(x, cfg)
        if noisy:
            y = y + cfg.label_noise * rng.standard_normal(y.shape)
        return Split(x, y[:, None].astype(np.float32))

    return TaskData(
        train=split(n_train, noisy=True),
        val=split(cfg.n_val, noisy=False),
        test=split(cfg.n_test, noisy=False),
    )


def make_data(cfg: ConfigDict, seed: int) -> ToyData:
    """Generates both tasks deterministically from ``seed``.

    The old and new tasks use independent child streams of ``np.random.SeedSequence(seed)``, so
    changing one task's size does not change the other task's samples.
    """
    old_ss, new_ss = np.random.SeedSequence(seed).spawn(2)
    old = _make_task(np.random.default_rng(old_ss), cfg, cfg.old_center, f_old, cfg.n_train_old)
    new = _make_task(np.random.default_rng(new_ss), cfg, cfg.new_center, f_new, cfg.n_train_new)
    return ToyData(old=old, new=new)


def batch_indices(n: int, batch_size: int, steps: int, seed: int) -> np.ndarray:
    """Mini-batch indices ``[steps, batch_size]`` from reshuffled epochs (drop-last), seeded.

    Every method fine-tuned from the same seed gets this exact array, i.e. the same data order.
    """
    if batch_size > n:
        raise ValueError(f"batch_size={batch_size} exceeds dataset size n={n}")
    rng = np.random.default_rng(seed)
    per_epoch = n // batch_size
    epochs = -(-steps // per_epoch)
    idx = np.concatenate(
        [
            rng.permutation(n)[: per_epoch * batch_size].reshape(per_epoch, batch_size)
            for _ in range(epochs)
        ]
    )
    return idx[:steps].astype(np.int32)
