"""Dataset preparation helpers for the experiments (TFDS builders that work offline, text corpora).

The Fashion-MNIST helpers are imported on first use (PEP 562): importing
``experiments.data.text`` for the language-model suites does not load TensorFlow Datasets.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "FashionMnistFromIdx",
    "FashionMnistUnavailableError",
    "ensure_fashion_mnist",
    "find_idx_dir",
    "validate_idx_dir",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("experiments.data.fashion_mnist"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
