"""Offline TFDS preparation of Fashion-MNIST from the Debian IDX files, and its error paths."""

import gzip
import struct

import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments.common.data import load_tfds
from experiments.data import fashion_mnist as fm
from tests._tfds import prepared_fashion_mnist

REAL_DIR = fm.find_idx_dir([fm.DEBIAN_IDX_DIR])
needs_real_files = pytest.mark.skipif(
    REAL_DIR is None,
    reason=f"Fashion-MNIST IDX files not in {fm.DEBIAN_IDX_DIR} "
    "(sudo apt-get install dataset-fashion-mnist)",
)


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    if magic == 2051:
        n, h, w = struct.unpack(">III", data[4:16])
        return np.frombuffer(data[16:], np.uint8).reshape(n, h, w, 1)
    (n,) = struct.unpack(">I", data[4:8])
    return np.frombuffer(data[8:], np.uint8)


def write_idx(path, magic, dims, payload=b""):
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(f">{1 + len(dims)}I", magic, *dims) + payload)


def test_missing_data_raises_with_install_hint(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(
        fm.FashionMnistUnavailableError, match="apt-get install dataset-fashion-mnist"
    ):
        fm.ensure_fashion_mnist(tmp_path / "tfds", search_dirs=[empty], download=False)


def test_validate_rejects_missing_and_wrong_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        fm.validate_idx_dir(tmp_path)
    for name, (magic, n) in fm.IDX_FILES.items():
        dims = (n, 28, 28) if magic == 2051 else (n,)
        write_idx(tmp_path / name, magic, dims)
    fm.validate_idx_dir(tmp_path)  # headers are right
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", 2051, (60_000, 32, 32))
    with pytest.raises(ValueError, match="not a Fashion-MNIST IDX file"):
        fm.validate_idx_dir(tmp_path)


def test_find_idx_dir_uses_env_var(tmp_path, monkeypatch):
    for name in fm.IDX_FILES:
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setenv(fm.IDX_DIR_ENV_VAR, str(tmp_path))
    assert fm.find_idx_dir() == tmp_path
    assert fm.find_idx_dir([tmp_path / "nope"]) is None


@needs_real_files
def test_real_headers_are_valid():
    fm.validate_idx_dir(REAL_DIR)


@pytest.fixture(scope="module")
def prepared_dir(tmp_path_factory):
    # Prepared by ensure_fashion_mnist once per run (here or for the notebook test).
    data_dir = prepared_fashion_mnist(tmp_path_factory, REAL_DIR)
    version_dir = fm.ensure_fashion_mnist(data_dir, search_dirs=[], download=False)
    return data_dir, version_dir


@needs_real_files
@pytest.mark.slow
def test_prepared_dataset_matches_idx_files_and_official_builder(prepared_dir):
    data_dir, version_dir = prepared_dir
    official = tfds.builder("fashion_mnist", data_dir=str(data_dir))
    assert official.is_prepared()
    assert str(version_dir) == str(official.data_dir)
    assert official.info.splits["train"].num_examples == 60_000
    assert official.info.splits["test"].num_examples == 10_000

    test = load_tfds("fashion_mnist", "test", data_dir=str(data_dir))
    assert test.images.shape == (10_000, 28, 28, 1)
    assert test.class_names[0] == "T-shirt/top" and test.class_names[9] == "Ankle boot"
    raw_images = read_idx(REAL_DIR / "t10k-images-idx3-ubyte.gz")
    raw_labels = read_idx(REAL_DIR / "t10k-labels-idx1-ubyte.gz")
    # TFDS shuffles example order on disk: compare as multisets keyed by image bytes.
    ours = sorted((im.tobytes(), int(lb)) for im, lb in zip(test.images, test.labels))
    raw = sorted((im.tobytes(), int(lb)) for im, lb in zip(raw_images, raw_labels))
    assert ours == raw
    np.testing.assert_array_equal(np.bincount(test.labels), np.full(10, 1000))

    # A second call finds the prepared data and does nothing.
    assert fm.ensure_fashion_mnist(data_dir, search_dirs=[], download=False) == version_dir


@needs_real_files
@pytest.mark.slow
def test_old_new_class_split(prepared_dir):
    data_dir, _ = prepared_dir
    old = load_tfds("fashion_mnist", "test", data_dir=str(data_dir), classes=(0, 1, 2, 3, 4))
    new = load_tfds("fashion_mnist", "test", data_dir=str(data_dir), classes=(5, 6, 7, 8, 9))
    assert len(old) == len(new) == 5000
    assert old.class_names == ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat")
    assert new.class_names == ("Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
    np.testing.assert_array_equal(np.bincount(new.labels), np.full(5, 1000))
