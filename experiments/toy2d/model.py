"""The MLP regressor of the 2D toy."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


class MLP(nn.Module):
    """``Dense_0 .. Dense_{k-1}`` with GELU, then a linear layer named ``head`` (1 output).

    The names are what :func:`profit_optax.masks.head_mask` (``head``) and
    :func:`profit_optax.masks.embedding_mask` (``Dense_0``, the input layer) look for.
    """

    hidden: Sequence[int]

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for i, width in enumerate(self.hidden):
            x = nn.gelu(nn.Dense(width, name=f"Dense_{i}")(x))
        return nn.Dense(1, name="head")(x)


def mse(model: nn.Module, params, x: jax.Array, y: jax.Array) -> jax.Array:
    """Mean squared error of ``model`` with ``params`` on ``(x, y)``."""
    return jnp.mean((model.apply({"params": params}, x) - y) ** 2)
