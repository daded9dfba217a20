"""In-memory image classification data from TFDS: loading, class subsets, batching, augmentation.

The datasets used here (Fashion-MNIST, CIFAR-10/100) fit in host memory, so,
like the official Flax MNIST example, a split is loaded once as NumPy arrays
(from ``tfds.load``) and batched on the host. This makes the data
order a pure function of ``(seed, epoch)``: every optimizer fine-tuned with the
same seed sees exactly the same batches in the same order. Augmentation (random
crop with zero padding, optional horizontal flip) runs in JAX inside the jitted
train step, keyed by ``(seed, step)``, so it is deterministic as well.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds

Batch = dict[str, np.ndarray]
_LOAD_CHUNK = 4096


@dataclasses.dataclass(frozen=True)
class ArrayDataset:
    """A labelled image dataset held in memory.

    Attributes:
      images: uint8 array [N, H, W, C].
      labels: int32 array [N] with values in ``[0, len(class_names))``.
      class_names: name of each (possibly relabelled) class.
    """

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"images must be uint8 [N,H,W,C], got {self.images.dtype}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(f"labels {self.labels.shape} do not match images {self.images.shape}")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)


#: Dataset name -> function(data_dir) that makes ``tfds.load`` work (e.g. prepares it offline).
DATASET_PREPARERS: dict[str, Callable[[str | None], object]] = {}


def _prepare_fashion_mnist(data_dir: str | None) -> object:
    from experiments.data.fashion_mnist import ensure_fashion_mnist

    return ensure_fashion_mnist(data_dir)


DATASET_PREPARERS["fashion_mnist"] = _prepare_fashion_mnist


def select_classes(
    images: np.ndarray,
    labels: np.ndarray,
    class_names: Sequence[str],
    classes: Sequence[int] | None,
) -> ArrayDataset:
    """Keeps the examples of ``classes`` and relabels them ``0..len(classes)-1`` in that order."""
    if classes is None:
        return ArrayDataset(images, labels.astype(np.int32), tuple(class_names))
    classes = [int(c) for c in classes]
    if len(set(classes)) != len(classes) or not all(0 <= c < len(class_names) for c in classes):
        raise ValueError(f"classes must be distinct ids in [0, {len(class_names)}), got {classes}")
    lookup = np.full(len(class_names), -1, dtype=np.int32)
    lookup[classes] = np.arange(len(classes), dtype=np.int32)
    keep = lookup[labels] >= 0
    return ArrayDataset(images[keep], lookup[labels[keep]], tuple(class_names[c] for c in classes))


def subsample(ds: ArrayDataset, max_examples: int | None, *, seed: int = 0) -> ArrayDataset:
    """A fixed random subset of at most ``max_examples`` examples (original order kept)."""
    if max_examples is None or max_examples >= len(ds):
        return ds
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(len(ds), size=max_examples, replace=False))
    return ArrayDataset(ds.images[keep], ds.labels[keep], ds.class_names)


def _random_split(
    ds: ArrayDataset, num_held: int, salt: int, seed: int
) -> tuple[ArrayDataset, ArrayDataset]:
    """``(rest, held)``: a fixed random ``num_held`` examples and the others, in order."""
    if not 0 < num_held < len(ds):
        raise ValueError(f"the held-out size must be in (0, {len(ds)}), got {num_held}")
    rng = np.random.default_rng([seed, salt])
    held = np.zeros(len(ds), bool)
    held[rng.choice(len(ds), size=num_held, replace=False)] = True
    part = lambda m: ArrayDataset(ds.images[m], ds.labels[m], ds.class_names)
    return part(~held), part(held)


def split_validation(
    ds: ArrayDataset, num_val: int, *, seed: int = 0
) -> tuple[ArrayDataset, ArrayDataset]:
    """Carves a fixed random validation set of ``num_val`` examples out of ``ds``.

    Returns ``(train, val)``, disjoint, each in the original order. The split is a
    function of ``seed`` only (not of the run seed), so every method and seed
    tunes on the same validation images and never sees them in training.
    """
    return _random_split(ds, num_val, 7_205_110, seed)


def split_fraction(
    ds: ArrayDataset, fraction: float, *, seed: int = 0
) -> tuple[ArrayDataset, ArrayDataset]:
    """Two disjoint fixed random parts of ``ds``, the first holding ``fraction`` of it.

    Used to pretrain on one part of a training split and fine-tune on the other.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    second, first = _random_split(ds, round(fraction * len(ds)), 1_620_001, seed)
    return first, second


def _prepare_once(name: str, data_dir: str | None) -> None:
    """Runs the dataset's preparer; with several processes, process 0 first.

    The others wait for it and then find the dataset prepared (a shared
    ``data_dir``) or prepare their own copy: never two writers at once.
    """
    if jax.process_count() == 1:
        DATASET_PREPARERS[name](data_dir)
        return
    from jax.experimental import multihost_utils

    if jax.process_index() == 0:
        DATASET_PREPARERS[name](data_dir)
    multihost_utils.sync_global_devices(f"prepare {name}")
    if jax.process_index() != 0:
        DATASET_PREPARERS[name](data_dir)


def load_tfds_split(
    name: str, split: str, *, data_dir: str | None = None, prepare: bool = True
) -> ArrayDataset:
    """Loads a whole TFDS image classification split into memory (uint8 images, int labels).

    Args:
      name: TFDS dataset name with an ``image`` and a ``label`` feature.
      split: TFDS split string (slicing such as ``"train[:10%]"`` works).
      data_dir: TFDS data directory; None for TFDS's default.
      prepare: run the dataset's preparer first when it has one (Fashion-MNIST
        from local IDX files, see :mod:`experiments.data.fashion_mnist`).
    """
    if prepare and name in DATASET_PREPARERS:
        _prepare_once(name, data_dir)
    ds, info = tfds.load(name, split=split, data_dir=data_dir, as_supervised=True, with_info=True)
    # Concatenating large batches rather than `batch_size=-1`: the latter asks for
    # one batch of the whole split, which aborts on datasets of unknown cardinality
    # (e.g. under tfds.testing.mock_data).
    chunks = list(tfds.as_numpy(ds.batch(_LOAD_CHUNK)))
    if not chunks:
        raise ValueError(f"TFDS split {name}:{split} is empty")
    images = np.concatenate([c[0] for c in chunks]).astype(np.uint8)
    labels = np.concatenate([c[1] for c in chunks]).astype(np.int32)
    return ArrayDataset(images, labels, tuple(info.features["label"].names))


def task_subset(
    ds: ArrayDataset,
    *,
    classes: Sequence[int] | None = None,
    max_examples: int | None = None,
    subset_seed: int = 0,
) -> ArrayDataset:
    """:func:`select_classes` then :func:`subsample` (a fixed subset, not the run seed)."""
    out = select_classes(ds.images, ds.labels, ds.class_names, classes)
    return subsample(out, max_examples, seed=subset_seed)


def load_tfds(
    name: str,
    split: str,
    *,
    data_dir: str | None = None,
    classes: Sequence[int] | None = None,
    max_examples: int | None = None,
    subset_seed: int = 0,
    prepare: bool = True,
) -> ArrayDataset:
    """:func:`load_tfds_split` then :func:`task_subset`.

    Args:
      name, split, data_dir, prepare: see :func:`load_tfds_split`.
      classes: original class ids to keep, relabelled ``0..k-1`` in this order.
      max_examples: keep a fixed random subset of this size (after class selection).
      subset_seed: seed of that subset (fixed: not the run seed).
    """
    ds = load_tfds_split(name, split, data_dir=data_dir, prepare=prepare)
    return task_subset(ds, classes=classes, max_examples=max_examples, subset_seed=subset_seed)


def train_batches(ds: ArrayDataset, batch_size: int, *, seed: int) -> Iterator[Batch]:
    """Endless shuffled batches; epoch ``e`` uses the permutation of ``default_rng([seed, e])``.

    Drops the last incomplete batch of each epoch, so every batch has the same
    shape (one compilation) and the order depends only on ``seed``.
    """
    if batch_size > len(ds):
        raise ValueError(f"batch_size {batch_size} exceeds the dataset size {len(ds)}")
    epoch = 0
    while True:
        perm = np.random.default_rng([seed, epoch]).permutation(len(ds))
        for i in range(len(ds) // batch_size):
            idx = perm[i * batch_size : (i + 1) * batch_size]
            yield {"image": ds.images[idx], "label": ds.labels[idx]}
        epoch += 1


def eval_batches(ds: ArrayDataset, batch_size: int) -> Iterator[Batch]:
    """Batches covering the whole dataset in order; the last one is zero-padded.

    Each batch has a float ``mask`` (1 = real example) so padded rows can be ignored.
    """
    for start in range(0, len(ds), batch_size):
        images = ds.images[start : start + batch_size]
        labels = ds.labels[start : start + batch_size]
        n = len(labels)
        pad = batch_size - n
        if pad:
            images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
            labels = np.concatenate([labels, np.zeros((pad,), labels.dtype)])
        mask = np.concatenate([np.ones(n, np.float32), np.zeros(pad, np.float32)])
        yield {"image": images, "label": labels, "mask": mask}


def normalize(images: jax.Array) -> jax.Array:
    """uint8 images -> float32 in [-1, 1] (big_vision's ``value_range(-1, 1)``)."""
    return images.astype(jnp.float32) / 127.5 - 1.0


def random_crop_flip(
    rng: jax.Array, images: jax.Array, *, crop_padding: int = 0, flip: bool = False
) -> jax.Array:
    """Per-example random crop after zero padding, and optional horizontal flip.

    Args:
      rng: PRNG key.
      images: [N, H, W, C] array (any dtype; padding value is 0).
      crop_padding: pixels of zero padding on each side before cropping back to H x W.
      flip: whether to flip each image horizontally with probability 1/2.
    """
    n, h, w, c = images.shape
    crop_rng, flip_rng = jax.random.split(rng)
    if crop_padding > 0:
        p = crop_padding
        padded = jnp.pad(images, ((0, 0), (p, p), (p, p), (0, 0)))
        offsets = jax.random.randint(crop_rng, (n, 2), 0, 2 * p + 1)
        images = jax.vmap(lambda img, o: jax.lax.dynamic_slice(img, (o[0], o[1], 0), (h, w, c)))(
            padded, offsets
        )
    if flip:
        do_flip = jax.random.bernoulli(flip_rng, 0.5, (n,))
        images = jnp.where(do_flip[:, None, None, None], images[:, :, ::-1], images)
    return images
