"""The paper's toy MLP: Dense(500) → LayerNorm → ReLU, twice, then a linear ``head``."""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

ACTIVATIONS = {"relu": nn.relu, "gelu": nn.gelu, "tanh": nn.tanh}


class MLP(nn.Module):
    """Weight layers [2, h0], [h0, h1], [h1, 1]; LayerNorm after every layer but the last.

    Layer names (``Dense_0`` the embedding, ``head`` the head) are what
    :mod:`profit_optax.masks` looks for.
    """

    hidden: Sequence[int] = (500, 500)
    activation: str = "relu"

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for i, width in enumerate(self.hidden):
            x = act(nn.LayerNorm(name=f"LayerNorm_{i}")(nn.Dense(width, name=f"Dense_{i}")(x)))
        return nn.Dense(1, name="head")(x)


def mse(model: nn.Module, params, x: jax.Array, y: jax.Array) -> jax.Array:
    """Mean squared error of ``model`` with ``params`` on ``(x, y)``."""
    return jnp.mean((model.apply({"params": params}, x) - y) ** 2)
