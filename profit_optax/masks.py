"""Boolean masks over parameter trees: embedding, head, arbitrary paths.

See :mod:`profit_optax._src.masks` for the conventions. Typical use::

  import optax
  from profit_optax import masks

  freeze = masks.embedding_mask(params)  # ViT patch embedding / first MLP layer
  tx = optax.selective_transform(optax.sgd(lr, momentum=0.9), freeze_mask=freeze)
"""

from profit_optax._src.masks import (
    embedding_mask,
    head_mask,
    invert_mask,
    normalize_path,
    path_mask,
    top_level_keys,
)

__all__ = [
    "embedding_mask",
    "head_mask",
    "invert_mask",
    "normalize_path",
    "path_mask",
    "top_level_keys",
]
