"""TFDS's fashion_mnist prepared once per test run, shared by the test processes.

The data tests (tests/experiments/test_data_fashion_mnist.py) and the Fashion-MNIST notebook
both need it prepared from the Debian IDX files, which takes about a minute; the first to ask
prepares it (``ensure_fashion_mnist``, the code under test) in a directory that every
pytest-xdist worker of the run shares, under a file lock, and the others find it prepared.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest

from experiments.data import fashion_mnist as fm


def prepared_fashion_mnist(tmp_path_factory: pytest.TempPathFactory, idx_dir: Path) -> Path:
    """The TFDS data directory of this test run with fashion_mnist prepared from ``idx_dir``."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # the run's directory, shared by its workers
    data_dir = root / "fashion_mnist_tfds"
    with open(root / "fashion_mnist_tfds.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        data_dir.mkdir(exist_ok=True)
        fm.ensure_fashion_mnist(data_dir, search_dirs=[idx_dir], download=False)
    return data_dir
