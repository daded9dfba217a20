"""The paper's toy data: f(x) = sin(10‖x‖) on an "old" and a "new" square.

Old inputs are uniform in ``old_box``², new inputs uniform in ``new_box``²
(by default [-1, 1]² and [0.8, 1.5]², which overlap only in [0.8, 1.0]²).
Training targets carry N(0, ``noise_std``²) noise; ``n_val`` of the ``n_train``
noisy training points of each task are held out as its validation split (noisy,
like the points they are carved from); test targets are noiseless. Everything is
a pure function of the seed.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import ml_collections
import numpy as np


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


def target(x: np.ndarray, frequency: float) -> np.ndarray:
    """``sin(frequency * ‖x‖)`` for inputs ``[..., 2]``."""
    return np.sin(frequency * np.linalg.norm(x, axis=-1))


def _task(rng: np.random.Generator, cfg: ml_collections.ConfigDict, box) -> TaskData:
    low, high = box

    def inputs(n: int) -> np.ndarray:
        return rng.uniform(low, high, size=(n, 2)).astype(np.float32)

    def split(x: np.ndarray, noisy: bool) -> Split:
        y = target(x, cfg.frequency)
        if noisy:
            y = y + cfg.noise_std * rng.standard_normal(y.shape)
        return Split(x, y[:, None].astype(np.float32))

    if not 0 < cfg.n_val < cfg.n_train:
        raise ValueError(f"need 0 < n_val < n_train, got {cfg.n_val} and {cfg.n_train}")
    train = split(inputs(cfg.n_train), noisy=True)
    test = split(inputs(cfg.n_test), noisy=False)
    keep = cfg.n_train - cfg.n_val  # the points are i.i.d.: the last n_val are the held-out ones
    return TaskData(
        train=Split(train.x[:keep], train.y[:keep]),
        val=Split(train.x[keep:], train.y[keep:]),
        test=test,
    )


def make_data(cfg: ml_collections.ConfigDict, seed: int) -> ToyData:
    """Both tasks from ``seed`` (independent child streams for old and new)."""
    old_ss, new_ss = np.random.SeedSequence([seed, 2412_01930]).spawn(2)
    return ToyData(
        old=_task(np.random.default_rng(old_ss), cfg, cfg.old_box),
        new=_task(np.random.default_rng(new_ss), cfg, cfg.new_box),
    )


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
