"""A multilayer perceptron classifier in flax.linen.

Parameter names are part of the contract with ``profit_optax.masks``: the
hidden layers are ``Dense_0 .. Dense_{k-1}`` (``Dense_0``, the first layer, is
the embedding of the flattened input) and the classifier is ``head``.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import ml_collections


class MLP(nn.Module):
    """Flatten -> [Dense -> ReLU] * len(hidden) -> Dense ``head``.

    Attributes:
      num_classes: outputs of the ``head``.
      hidden: widths of the hidden layers ``Dense_0, Dense_1, ...``.
    """

    num_classes: int
    hidden: Sequence[int] = (256, 256)

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool = False) -> jax.Array:
        """Maps inputs [N, ...] to logits [N, num_classes]; ``train`` is unused (no dropout)."""
        del train
        x = images.reshape(images.shape[0], -1)
        for i, width in enumerate(self.hidden):
            x = nn.relu(nn.Dense(width, name=f"Dense_{i}")(x))
        return nn.Dense(self.num_classes, name="head")(x)


def build_model(model_config: ml_collections.ConfigDict, num_classes: int) -> MLP:
    """The MLP described by ``config.model`` (``hidden`` layer widths)."""
    return MLP(num_classes=num_classes, hidden=tuple(model_config.hidden))
