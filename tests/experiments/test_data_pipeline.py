"""Host data pipeline: class selection, subsets, seeded batch order, eval padding, augmentation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments.common import data


def toy_dataset(n=50, num_classes=10):
    images = np.arange(n * 4 * 4, dtype=np.int64).reshape(n, 4, 4, 1) % 251
    labels = np.arange(n) % num_classes
    names = tuple(f"c{i}" for i in range(num_classes))
    return data.ArrayDataset(images.astype(np.uint8), labels.astype(np.int32), names)


def test_select_classes_relabels_in_given_order():
    ds = toy_dataset()
    sub = data.select_classes(ds.images, ds.labels, ds.class_names, (7, 2))
    assert sub.class_names == ("c7", "c2")
    assert len(sub) == 10
    original = ds.labels[np.isin(ds.labels, (7, 2))]
    np.testing.assert_array_equal(sub.labels, np.where(original == 7, 0, 1))
    with pytest.raises(ValueError, match="distinct"):
        data.select_classes(ds.images, ds.labels, ds.class_names, (1, 1))
    with pytest.raises(ValueError, match="distinct"):
        data.select_classes(ds.images, ds.labels, ds.class_names, (10,))


def test_subsample_is_fixed_and_ordered():
    ds = toy_dataset()
    a, b = data.subsample(ds, 20, seed=0), data.subsample(ds, 20, seed=0)
    np.testing.assert_array_equal(a.images, b.images)
    assert len(a) == 20
    assert data.subsample(ds, None) is ds and data.subsample(ds, 500) is ds
    positions = [int(np.flatnonzero((ds.images == im).all(axis=(1, 2, 3)))[0]) for im in a.images]
    assert positions == sorted(positions)


def test_train_batches_deterministic_per_seed_and_cover_each_epoch():
    ds = toy_dataset()
    take = lambda it, k: [next(it) for _ in range(k)]
    a = take(data.train_batches(ds, 8, seed=3), 12)
    b = take(data.train_batches(ds, 8, seed=3), 12)
    c = take(data.train_batches(ds, 8, seed=4), 12)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x["image"], y["image"])
        np.testing.assert_array_equal(x["label"], y["label"])
    assert any(not np.array_equal(x["image"], z["image"]) for x, z in zip(a, c))
    # 50 // 8 = 6 batches per epoch, drawn without replacement; epochs differ.
    epoch0 = np.concatenate([x["image"] for x in a[:6]]).reshape(48, -1)
    assert len({row.tobytes() for row in epoch0}) == 48
    assert not np.array_equal(a[0]["image"], a[6]["image"])
    with pytest.raises(ValueError, match="exceeds"):
        next(data.train_batches(ds, 51, seed=0))


def test_eval_batches_pad_and_mask():
    ds = toy_dataset(n=10)
    batches = list(data.eval_batches(ds, 4))
    assert [b["image"].shape[0] for b in batches] == [4, 4, 4]
    np.testing.assert_array_equal(batches[-1]["mask"], [1, 1, 0, 0])
    np.testing.assert_array_equal(
        np.concatenate([b["label"][b["mask"] > 0] for b in batches]), ds.labels
    )


def test_random_crop_flip():
    images = jnp.asarray(np.random.default_rng(0).integers(1, 255, (6, 8, 8, 3)), jnp.uint8)
    rng = jax.random.key(0)
    np.testing.assert_array_equal(data.random_crop_flip(rng, images), images)
    out = data.random_crop_flip(rng, images, crop_padding=2)
    assert out.shape == images.shape and out.dtype == images.dtype
    np.testing.assert_array_equal(out, data.random_crop_flip(rng, images, crop_padding=2))
    padded = np.pad(np.asarray(images), ((0, 0), (2, 2), (2, 2), (0, 0)))
    for img, crop in zip(padded, np.asarray(out)):  # every output is a window of its padded input
        windows = [img[i : i + 8, j : j + 8] for i in range(5) for j in range(5)]
        assert any(np.array_equal(w, crop) for w in windows)
    flipped = np.asarray(data.random_crop_flip(jax.random.key(1), images, flip=True))
    for img, f in zip(np.asarray(images), flipped):
        assert np.array_equal(f, img) or np.array_equal(f, img[:, ::-1])
    assert any(not np.array_equal(f, img) for img, f in zip(np.asarray(images), flipped))


def test_normalize_range():
    x = data.normalize(jnp.array([0, 255], jnp.uint8))
    np.testing.assert_allclose(x, [-1.0, 1.0])


def test_load_tfds_under_mock_data():
    with tfds.testing.mock_data(num_examples=40):
        full = data.load_tfds("cifar10", "train", prepare=False)
        sub = data.load_tfds("cifar10", "test", classes=(0, 1, 2), max_examples=5, prepare=False)
    assert full.images.shape == (40, 32, 32, 3) and full.images.dtype == np.uint8
    assert full.num_classes == 10
    assert sub.num_classes == 3 and len(sub) <= 5
    assert set(sub.labels.tolist()) <= {0, 1, 2}
