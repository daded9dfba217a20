"""Fine-tuning in float64 from float32-pretrained models (``--x64``)."""

from __future__ import annotations

from typing import Any


def add_x64_argument(parser: Any) -> None:
    """``--x64``: fine-tune in float64 from the float32 pretrained models (cast up)."""
    parser.add_argument(
        "--x64",
        action="store_true",
        help="fine-tune in float64 (the same float32-pretrained models, cast up): where a "
        "fixed λ_ref's Δ rounds away in float32, float64 shows what Algorithm 1 does with it",
    )


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
