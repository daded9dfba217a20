"""Offline preparation of the TFDS ``fashion_mnist`` dataset from local IDX files.

TFDS's own ``fashion_mnist`` builder downloads the four IDX files from the
Zalando S3 bucket and validates them against registered SHA-256 checksums. The
copies shipped by Debian's ``dataset-fashion-mnist`` package hold the same
images and labels, but they were re-compressed (the gzip header lost the
original file name), so their checksums differ and TFDS rejects them both as
``manual_dir`` files and as cached downloads.

Rather than faking the download cache, :class:`FashionMnistFromIdx` subclasses
the official builder and only replaces how the raw files are obtained: it
decompresses the local ``*.gz`` files with TFDS's extractor and then reuses the
official ``_generate_examples`` (same features, splits, version and example
keys). It writes the prepared dataset under ``<data_dir>/fashion_mnist/<version>``,
exactly where the official builder looks, so afterwards plain
``tfds.load("fashion_mnist", data_dir=...)`` works everywhere, offline.

:func:`ensure_fashion_mnist` is the entry point used by the experiments: it is
a no-op when the dataset is already prepared, prepares it from local IDX files
when it finds them, lets TFDS download it when allowed, and otherwise raises
:class:`FashionMnistUnavailableError` naming the fix.
"""

from __future__ import annotations

import gzip
import os
import struct
from collections.abc import Sequence
from pathlib import Path

import tensorflow_datasets as tfds
from etils import epath
from tensorflow_datasets.core import utils as tfds_utils
from tensorflow_datasets.image_classification import mnist as tfds_mnist

#: Directory where Debian's ``dataset-fashion-mnist`` package installs the IDX files.
DEBIAN_IDX_DIR = "/usr/share/datasets/fashion-mnist"
#: Environment variable that may point at a directory holding the four IDX files.
IDX_DIR_ENV_VAR = "FASHION_MNIST_IDX_DIR"

#: IDX file name -> (magic number, number of items) for the four Fashion-MNIST files.
IDX_FILES: dict[str, tuple[int, int]] = {
    "train-images-idx3-ubyte.gz": (2051, 60_000),
    "train-labels-idx1-ubyte.gz": (2049, 60_000),
    "t10k-images-idx3-ubyte.gz": (2051, 10_000),
    "t10k-labels-idx1-ubyte.gz": (2049, 10_000),
}

INSTALL_HINT = (
    "Install the original IDX files with `sudo apt-get install dataset-fashion-mnist` "
    f"(they land in {DEBIAN_IDX_DIR}), or point ${IDX_DIR_ENV_VAR} at a directory holding "
    + ", ".join(IDX_FILES)
    + ", or run once with internet access so that TFDS can download fashion_mnist."
)


class FashionMnistUnavailableError(RuntimeError):
    """Raised when Fashion-MNIST is neither prepared, nor found locally, nor downloadable."""


class FashionMnistFromIdx(tfds_mnist.FashionMNIST, skip_registration=True):
    """The official TFDS ``fashion_mnist`` builder, reading the IDX files from ``manual_dir``.

    Not registered with TFDS (the official builder keeps the name); it only
    writes the prepared files, which ``tfds.load("fashion_mnist")`` then reads.
    """

    name = "fashion_mnist"
    MANUAL_DOWNLOAD_INSTRUCTIONS = INSTALL_HINT

    @tfds_utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        """This file. TFDS 4.9's default resolves builders that live in a package
        through ``importlib_resources``, which it only requires on Python < 3.9."""
        return epath.Path(__file__)

    def _split_generators(self, dl_manager: tfds.download.DownloadManager):
        """Decompresses the local IDX files and defines the train/test splits."""
        manual_dir = Path(dl_manager.manual_dir)
        files = dl_manager.extract(
            {
                "train_data": manual_dir / "train-images-idx3-ubyte.gz",
                "train_labels": manual_dir / "train-labels-idx1-ubyte.gz",
                "test_data": manual_dir / "t10k-images-idx3-ubyte.gz",
                "test_labels": manual_dir / "t10k-labels-idx1-ubyte.gz",
            }
        )
        return [
            tfds.core.SplitGenerator(
                name=tfds.Split.TRAIN,
                gen_kwargs={
                    "num_examples": IDX_FILES["train-labels-idx1-ubyte.gz"][1],
                    "data_path": files["train_data"],
                    "label_path": files["train_labels"],
                },
            ),
            tfds.core.SplitGenerator(
                name=tfds.Split.TEST,
                gen_kwargs={
                    "num_examples": IDX_FILES["t10k-labels-idx1-ubyte.gz"][1],
                    "data_path": files["test_data"],
                    "label_path": files["test_labels"],
                },
            ),
        ]


def validate_idx_dir(idx_dir: str | os.PathLike[str]) -> None:
    """Checks that ``idx_dir`` holds the four gzipped Fashion-MNIST IDX files.

    Reads only the headers: magic number, item count and (for images) 28x28.

    Raises:
      FileNotFoundError: a file is missing.
      ValueError: a header does not match Fashion-MNIST.
    """
    idx_dir = Path(idx_dir)
    for fname, (magic, count) in IDX_FILES.items():
        path = idx_dir / fname
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist. {INSTALL_HINT}")
        with gzip.open(path, "rb") as f:
            header = f.read(16 if magic == 2051 else 8)
        fields = struct.unpack(f">{len(header) // 4}I", header)
        expected = (magic, count, 28, 28) if magic == 2051 else (magic, count)
        if fields != expected:
            raise ValueError(
                f"{path} is not a Fashion-MNIST IDX file: header {fields}, expected {expected}."
            )


def find_idx_dir(search_dirs: Sequence[str | os.PathLike[str]] | None = None) -> Path | None:
    """Returns the first directory holding all four IDX files, or None.

    Args:
      search_dirs: directories to look in. Defaults to ``$FASHION_MNIST_IDX_DIR``
        (when set) followed by :data:`DEBIAN_IDX_DIR`.
    """
    if search_dirs is None:
        env_dir = os.environ.get(IDX_DIR_ENV_VAR)
        search_dirs = [d for d in (env_dir, DEBIAN_IDX_DIR) if d]
    for directory in search_dirs:
        if all((Path(directory) / fname).is_file() for fname in IDX_FILES):
            return Path(directory)
    return None


def ensure_fashion_mnist(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    search_dirs: Sequence[str | os.PathLike[str]] | None = None,
    download: bool = True,
) -> Path:
    """Makes ``tfds.load("fashion_mnist", data_dir=data_dir)`` work, offline if possible.

    In order: (1) nothing to do when the dataset is already prepared in
    ``data_dir``; (2) prepare it from local IDX files (:func:`find_idx_dir`);
    (3) when ``download`` is true, let the official TFDS builder download it.

    Args:
      data_dir: TFDS data directory (None: TFDS's default, ``$TFDS_DATA_DIR`` or
        ``~/tensorflow_datasets``).
      search_dirs: where to look for IDX files (see :func:`find_idx_dir`).
      download: whether to fall back on TFDS downloading from the internet.

    Returns:
      The directory of the prepared dataset version.

    Raises:
      FashionMnistUnavailableError: no prepared dataset, no local files, and
        downloading is disabled or failed. The message names the fix.
    """
    data_dir = os.fspath(data_dir) if data_dir is not None else None
    official = tfds.builder("fashion_mnist", data_dir=data_dir)
    if official.is_prepared():
        return Path(official.data_dir)

    idx_dir = find_idx_dir(search_dirs)
    if idx_dir is not None:
        validate_idx_dir(idx_dir)
        builder = FashionMnistFromIdx(data_dir=data_dir)
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(manual_dir=os.fspath(idx_dir))
        )
        return Path(builder.data_dir)

    searched = list(search_dirs) if search_dirs is not None else [DEBIAN_IDX_DIR]
    if not download:
        raise FashionMnistUnavailableError(
            f"Fashion-MNIST is not prepared in the TFDS data dir and no IDX files were found "
            f"in {searched}; downloading is disabled. {INSTALL_HINT}"
        )
    try:
        official.download_and_prepare()
    except Exception as e:
        raise FashionMnistUnavailableError(
            f"Fashion-MNIST is not prepared, no IDX files were found in {searched}, and the "
            f"TFDS download failed ({type(e).__name__}: {e}). {INSTALL_HINT}"
        ) from e
    return Path(official.data_dir)
