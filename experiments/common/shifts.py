"""Fixed, seeded input shifts of an image dataset: the covariate-shift tasks.

A shift is a pure function of ``(images, kind, severity, seed)``: every method
and run sees exactly the same shifted images, and the shift of one image does
not depend on the others (image ``i`` uses ``default_rng([seed, i])``).

Kinds (``severity`` in the unit of each):

* ``rotate``: a geometric shift. Image ``i`` is rotated about its centre by
  ``±severity · u_i`` degrees, ``u_i`` uniform in [0.5, 1] and the sign random:
  bilinear interpolation, zero fill.
* ``noise``: a photometric shift. Gaussian pixel noise of standard deviation
  ``severity`` (on the 0–255 scale), rounded and clipped to uint8.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from experiments.common.data import ArrayDataset

KINDS = ("rotate", "noise")


def shift_images(images: np.ndarray, kind: str, severity: float, seed: int) -> np.ndarray:
    """``images`` (uint8 ``[N, H, W, C]``) under the shift ``kind`` at ``severity``.

    Example:
      >>> x = np.zeros((2, 8, 8, 1), np.uint8); x[:, 2:6, 3:5] = 200
      >>> y = shift_images(x, "rotate", 90.0, seed=0)
      >>> y.shape, y.dtype, bool((y != x).any())
      ((2, 8, 8, 1), dtype('uint8'), True)
      >>> bool((shift_images(x, "noise", 0.0, seed=0) == x).all())
      True
    """
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [N, H, W, C], got {images.dtype} {images.shape}")
    if kind not in KINDS:
        raise ValueError(f"unknown shift {kind!r}; kinds: {KINDS}")
    if not severity >= 0:
        raise ValueError(f"severity must be >= 0, got {severity!r}")
    out = np.empty_like(images)
    for i, image in enumerate(images):
        rng = np.random.default_rng([seed, i])
        if kind == "rotate":
            angle = severity * rng.uniform(0.5, 1.0) * rng.choice((-1.0, 1.0))
            rotated = ndimage.rotate(
                image.astype(np.float32), angle, axes=(0, 1), reshape=False, order=1, cval=0.0
            )
            out[i] = np.clip(np.rint(rotated), 0, 255).astype(np.uint8)
        else:
            noisy = image.astype(np.float32) + severity * rng.standard_normal(image.shape)
            out[i] = np.clip(np.rint(noisy), 0, 255).astype(np.uint8)
    return out


def shift_dataset(ds: ArrayDataset, kind: str, severity: float, seed: int) -> ArrayDataset:
    """``ds`` with :func:`shift_images` applied; labels unchanged."""
    return ArrayDataset(shift_images(ds.images, kind, severity, seed), ds.labels, ds.class_names)
