"""The covariate shifts: deterministic, per-image, label-preserving, of the stated size."""

from __future__ import annotations

import numpy as np
import pytest

from experiments.common.data import ArrayDataset, split_fraction
from experiments.common.shifts import shift_dataset, shift_images


def _images(n=6, seed=0):
    rng = np.random.default_rng(seed)
    x = np.zeros((n, 28, 28, 1), np.uint8)
    x[:, 6:22, 11:17] = rng.integers(100, 255, size=(n, 16, 6, 1))  # an upright bar
    return x


def test_rotation_turns_the_image_by_the_stated_angle_range():
    x = _images()
    y = shift_images(x, "rotate", 40.0, seed=0)
    assert y.shape == x.shape and y.dtype == np.uint8
    for a, b in zip(x, y, strict=True):
        # Orientation of the bright pixels' principal axis: vertical before, tilted by 20-40 deg.
        def angle(img):
            r, c = np.nonzero(img[..., 0] > 50)
            cov = np.cov(np.stack([c - c.mean(), r - r.mean()]))
            _, v = np.linalg.eigh(cov)
            return np.degrees(np.arctan2(v[0, -1], v[1, -1]))

        turned = abs((angle(b) - angle(a) + 90) % 180 - 90)
        assert 15 <= turned <= 45, turned
    np.testing.assert_array_equal(shift_images(x, "rotate", 0.0, seed=0), x)


def test_noise_has_the_stated_std_and_keeps_uint8():
    x = np.full((4, 28, 28, 1), 128, np.uint8)
    y = shift_images(x, "noise", 20.0, seed=0).astype(np.float32)
    assert abs((y - 128).std() - 20.0) < 1.0
    assert shift_images(x, "noise", 500.0, seed=0).max() <= 255


def test_shifts_are_deterministic_and_per_image():
    x = _images(8)
    for kind in ("rotate", "noise"):
        a = shift_images(x, kind, 30.0, seed=3)
        np.testing.assert_array_equal(a, shift_images(x, kind, 30.0, seed=3))
        assert not np.array_equal(a, shift_images(x, kind, 30.0, seed=4))
        # Image i's shift depends on (seed, i) only, not on the rest of the batch.
        np.testing.assert_array_equal(shift_images(x[:3], kind, 30.0, seed=3), a[:3])


def test_dataset_shift_keeps_labels_and_errors_name_the_problem():
    ds = ArrayDataset(_images(4), np.arange(4, dtype=np.int32), tuple("abcd"))
    out = shift_dataset(ds, "noise", 10.0, seed=0)
    np.testing.assert_array_equal(out.labels, ds.labels)
    with pytest.raises(ValueError, match="unknown shift 'blur'"):
        shift_images(ds.images, "blur", 1.0, seed=0)
    with pytest.raises(ValueError, match="severity must be >= 0"):
        shift_images(ds.images, "noise", -1.0, seed=0)
    with pytest.raises(ValueError, match="uint8"):
        shift_images(ds.images.astype(np.float32), "noise", 1.0, seed=0)


def test_split_fraction_is_disjoint_and_fixed():
    ds = ArrayDataset(
        np.arange(40, dtype=np.uint8).reshape(40, 1, 1, 1), np.zeros(40, np.int32), ("a",)
    )
    first, second = split_fraction(ds, 0.25)
    assert (len(first), len(second)) == (10, 30)
    ids = sorted(np.concatenate([first.images.ravel(), second.images.ravel()]).tolist())
    assert ids == list(range(40))
    np.testing.assert_array_equal(split_fraction(ds, 0.25)[0].images, first.images)
    with pytest.raises(ValueError, match="fraction"):
        split_fraction(ds, 1.0)
