"""Fine-tuning in float64 from float32-pretrained models (a sweep config's ``x64``)."""

from __future__ import annotations

from typing import Any


def fine_tune_dtype(x64: bool) -> Any:
    """``jnp.float64`` after turning on ``jax_enable_x64`` (process-wide), or ``None``."""
    if not x64:
        return None
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    return jnp.float64


def cast_params(tree: Any, dtype: Any) -> Any:
    """``tree`` with every leaf cast to ``dtype`` (unchanged for ``None``)."""
    if dtype is None:
        return tree
    import jax
    import jax.numpy as jnp

    return jax.tree.map(lambda x: jnp.asarray(x, dtype), tree)
