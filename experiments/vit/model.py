"""Vision Transformer (Dosovitskiy et al., 2021) in flax.linen, following big_vision's layout.

Parameter names are part of the contract with ``profit_optax.masks``:

* ``embedding``: the patch-embedding ``Conv`` (kernel, bias),
* ``pos_embedding``: learned position embedding [1, num_patches, width],
* ``cls``: class token [1, 1, width] (only with ``pool="tok"``),
* ``Transformer``: ``encoderblock_{i}`` pre-LN blocks and the final ``encoder_norm``,
* ``head``: the classification ``Dense``.

As in big_vision, the position embedding covers the patches only; the class
token is prepended after adding it.
"""

from __future__ import annotations

from typing import Literal

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

#: Model sizes: width (hidden size D), depth (blocks), num_heads, mlp_dim.
VARIANTS: dict[str, dict[str, int]] = {
    # CPU-scale model for the offline Fashion-MNIST task and tests.
    "mini": {"width": 64, "depth": 4, "num_heads": 4, "mlp_dim": 128},
    "Ti": {"width": 192, "depth": 12, "num_heads": 3, "mlp_dim": 768},
    "S": {"width": 384, "depth": 12, "num_heads": 6, "mlp_dim": 1536},
    "B": {"width": 768, "depth": 12, "num_heads": 12, "mlp_dim": 3072},
    "L": {"width": 1024, "depth": 24, "num_heads": 16, "mlp_dim": 4096},
}


class MlpBlock(nn.Module):
    """Transformer MLP: Dense(mlp_dim) -> GELU -> Dropout -> Dense(width)."""

    mlp_dim: int
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        width = x.shape[-1]
        dense = lambda n: nn.Dense(
            n,
            kernel_init=nn.initializers.xavier_uniform(),
            bias_init=nn.initializers.normal(stddev=1e-6),
        )
        x = nn.gelu(dense(self.mlp_dim)(x))
        x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=not train)
        return dense(width)(x)


class Encoder1DBlock(nn.Module):
    """Pre-LN transformer block: x + MHSA(LN(x)), then x + MLP(LN(x))."""

    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        y = nn.LayerNorm()(x)
        y = nn.MultiHeadDotProductAttention(
            num_heads=self.num_heads,
            kernel_init=nn.initializers.xavier_uniform(),
            deterministic=True,
        )(y, y)
        x = x + nn.Dropout(rate=self.dropout_rate)(y, deterministic=not train)
        y = nn.LayerNorm()(x)
        y = MlpBlock(mlp_dim=self.mlp_dim, dropout_rate=self.dropout_rate)(y, train=train)
        return x + nn.Dropout(rate=self.dropout_rate)(y, deterministic=not train)


class Encoder(nn.Module):
    """``depth`` blocks named ``encoderblock_{i}`` followed by LayerNorm ``encoder_norm``."""

    depth: int
    num_heads: int
    mlp_dim: int
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        for i in range(self.depth):
            x = Encoder1DBlock(
                num_heads=self.num_heads,
                mlp_dim=self.mlp_dim,
                dropout_rate=self.dropout_rate,
                name=f"encoderblock_{i}",
            )(x, train=train)
        return nn.LayerNorm(name="encoder_norm")(x)


class ViT(nn.Module):
    """Vision Transformer classifier.

    Attributes:
      num_classes: outputs of the ``head``.
      patch_size: side of the square patches (image sides must be multiples).
      width: hidden size D.
      depth: number of transformer blocks.
      num_heads: attention heads (must divide ``width``).
      mlp_dim: hidden size of the block MLPs.
      pool: ``"tok"`` (class token ``cls``) or ``"gap"`` (mean over patch tokens).
      dropout_rate: dropout after the embedding, attention and MLPs (train only).
    """

    num_classes: int
    patch_size: int = 16
    width: int = 192
    depth: int = 12
    num_heads: int = 3
    mlp_dim: int = 768
    pool: Literal["tok", "gap"] = "tok"
    dropout_rate: float = 0.0

    @nn.compact
    def __call__(self, images: jax.Array, *, train: bool = False) -> jax.Array:
        """Maps float images [N, H, W, C] to logits [N, num_classes]."""
        if self.pool not in ("tok", "gap"):
            raise ValueError(f"pool must be 'tok' or 'gap', got {self.pool!r}")
        p = self.patch_size
        x = nn.Conv(self.width, (p, p), strides=(p, p), padding="VALID", name="embedding")(images)
        n, h, w, d = x.shape
        x = x.reshape(n, h * w, d)
        pos = self.param(
            "pos_embedding", nn.initializers.normal(stddev=1 / np.sqrt(d)), (1, h * w, d)
        )
        x = x + pos
        if self.pool == "tok":
            cls = self.param("cls", nn.initializers.zeros, (1, 1, d))
            x = jnp.concatenate([jnp.broadcast_to(cls, (n, 1, d)), x], axis=1)
        x = nn.Dropout(rate=self.dropout_rate)(x, deterministic=not train)
        x = Encoder(
            depth=self.depth,
            num_heads=self.num_heads,
            mlp_dim=self.mlp_dim,
            dropout_rate=self.dropout_rate,
            name="Transformer",
        )(x, train=train)
        x = x[:, 0] if self.pool == "tok" else x.mean(axis=1)
        return nn.Dense(self.num_classes, name="head")(x)


def vit(
    variant: str,
    num_classes: int,
    *,
    patch_size: int | None = None,
    pool: Literal["tok", "gap"] = "tok",
    dropout_rate: float = 0.0,
) -> ViT:
    """Builds a :class:`ViT` of a named size.

    Args:
      variant: a key of :data:`VARIANTS`, optionally with the patch size as in
        ``"Ti/16"``.
      num_classes: outputs of the head.
      patch_size: patch side; required unless given in ``variant``.
      pool: ``"tok"`` or ``"gap"``.
      dropout_rate: dropout rate (train only).
    """
    name, _, patch = variant.partition("/")
    if name not in VARIANTS:
        raise ValueError(f"unknown ViT variant {variant!r}; choose from {sorted(VARIANTS)}")
    if patch:
        if patch_size is not None and patch_size != int(patch):
            raise ValueError(f"variant {variant!r} conflicts with patch_size={patch_size}")
        patch_size = int(patch)
    if patch_size is None:
        raise ValueError("patch_size is required when the variant does not name it")
    return ViT(
        num_classes=num_classes,
        patch_size=patch_size,
        pool=pool,
        dropout_rate=dropout_rate,
        **VARIANTS[name],
    )


def build_model(model_config: ml_collections.ConfigDict, num_classes: int) -> ViT:
    """The ViT described by ``config.model`` (variant, patch_size, pool, dropout_rate)."""
    return vit(
        model_config.variant,
        num_classes,
        patch_size=model_config.patch_size,
        pool=model_config.pool,
        dropout_rate=model_config.dropout_rate,
    )
