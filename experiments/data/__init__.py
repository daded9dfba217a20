"""Dataset preparation helpers for the experiments (TFDS builders that work offline)."""

from experiments.data.fashion_mnist import (
    FashionMnistFromIdx,
    FashionMnistUnavailableError,
    ensure_fashion_mnist,
    find_idx_dir,
    validate_idx_dir,
)

__all__ = [
    "FashionMnistFromIdx",
    "FashionMnistUnavailableError",
    "ensure_fashion_mnist",
    "find_idx_dir",
    "validate_idx_dir",
]
