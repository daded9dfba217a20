"""A small ResNet with batch normalization in Flax NNX, for 28×28×1 Fashion-MNIST.

The CPU-scale counterpart of the paper's ResNet-18 (He et al., 2016; the CIFAR
variant without the max-pool): a 3×3 stem, stages of basic residual blocks
(two 3×3 convolutions, each followed by ``nnx.BatchNorm``; a 1×1 projection on
the shortcut where the shape changes), global average pooling and a linear head.

Attribute names are part of the contract with ``profit_optax.masks``:

* ``embedding``: the stem (``conv`` and its ``norm``), what freeze-embedding
  fine-tuning freezes;
* ``stages``: ``stages/<i>/<j>`` is block ``j`` of stage ``i``;
* ``head``: the classification ``nnx.Linear``.

Batch normalization follows the module's mode: after ``model.train()`` (the
default) it normalizes with the batch's statistics and moves the running
statistics (the ``nnx.BatchStat`` variables); after ``model.eval()`` it
normalizes with the running statistics and changes nothing. The momentum is
PyTorch's default (0.1 of each new batch, ``momentum=0.9`` in Flax's
convention), as in the paper's PyTorch ResNet-18.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import ml_collections
from flax import nnx

#: Stage widths and blocks per stage, and the stem's stride.
VARIANTS: dict[str, dict[str, tuple[int, ...] | int]] = {
    # CPU scale: one fine-tuning run of the recipe's budget in a few minutes on 2 cores
    # (experiments/resnet_sizing.md). The stride-2 stem (stages at 14×14, 7×7, 4×4) makes
    # a training step ~10× faster than stride 1 at the same 77k parameters.
    "mini": {"widths": (16, 32, 64), "blocks": (1, 1, 1), "stem_stride": 2},
    # The tests' model: seconds.
    "tiny": {"widths": (4, 8), "blocks": (1, 1), "stem_stride": 2},
    # The paper's ResNet-18 layout (CIFAR stem), for reference; not run on CPU.
    "18": {"widths": (64, 128, 256, 512), "blocks": (2, 2, 2, 2), "stem_stride": 1},
}

#: Batch-norm momentum in Flax's convention (PyTorch's momentum=0.1) and epsilon.
BN_MOMENTUM = 0.9
BN_EPSILON = 1e-5

_conv_init = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")  # He, as torchvision


def _conv(cin: int, cout: int, kernel: int, stride: int, rngs: nnx.Rngs) -> nnx.Conv:
    return nnx.Conv(
        cin,
        cout,
        (kernel, kernel),
        strides=(stride, stride),
        padding="SAME",
        use_bias=False,
        kernel_init=_conv_init,
        rngs=rngs,
    )


def _norm(features: int, rngs: nnx.Rngs) -> nnx.BatchNorm:
    return nnx.BatchNorm(features, momentum=BN_MOMENTUM, epsilon=BN_EPSILON, rngs=rngs)


class Stem(nnx.Module):
    """3×3 convolution → BatchNorm → ReLU."""

    def __init__(self, cin: int, cout: int, stride: int, *, rngs: nnx.Rngs):
        self.conv = _conv(cin, cout, 3, stride, rngs)
        self.norm = _norm(cout, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return nnx.relu(self.norm(self.conv(x)))


class BasicBlock(nnx.Module):
    """ReLU(x' + BN(conv(ReLU(BN(conv(x)))))), x' = x or BN(1×1 conv(x)) when the shape changes."""

    def __init__(self, cin: int, cout: int, stride: int, *, rngs: nnx.Rngs):
        self.conv1 = _conv(cin, cout, 3, stride, rngs)
        self.norm1 = _norm(cout, rngs)
        self.conv2 = _conv(cout, cout, 3, 1, rngs)
        self.norm2 = _norm(cout, rngs)
        if stride != 1 or cin != cout:
            self.shortcut: nnx.Sequential | None = nnx.Sequential(
                _conv(cin, cout, 1, stride, rngs), _norm(cout, rngs)
            )
        else:
            self.shortcut = None

    def __call__(self, x: jax.Array) -> jax.Array:
        y = nnx.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return nnx.relu(y + (x if self.shortcut is None else self.shortcut(x)))


class ResNet(nnx.Module):
    """Stem → stages of :class:`BasicBlock` (stride 2 at the start of every stage but the
    first) → global average pooling → ``head``.

    Args:
      num_classes: outputs of the ``head``.
      widths: channels of each stage.
      blocks: basic blocks in each stage.
      stem_stride: the stem convolution's stride.
      in_channels: image channels.
      rngs: initialisation keys.
    """

    def __init__(
        self,
        num_classes: int,
        widths: Sequence[int] = (16, 32, 64),
        blocks: Sequence[int] = (1, 1, 1),
        *,
        stem_stride: int = 1,
        in_channels: int = 1,
        rngs: nnx.Rngs,
    ):
        if len(widths) != len(blocks) or not widths or min(blocks) < 1:
            raise ValueError(
                f"widths {tuple(widths)} and blocks {tuple(blocks)} must be non-empty, of "
                "equal length, with at least one block per stage"
            )
        self.embedding = Stem(in_channels, widths[0], stem_stride, rngs=rngs)
        stages = []
        cin = widths[0]
        for i, (width, n) in enumerate(zip(widths, blocks, strict=True)):
            stage = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                stage.append(BasicBlock(cin, width, stride, rngs=rngs))
                cin = width
            stages.append(nnx.List(stage))
        self.stages = nnx.List(stages)
        self.head = nnx.Linear(cin, num_classes, rngs=rngs)

    def features(self, images: jax.Array) -> jax.Array:
        """Float images [N, H, W, C] -> pooled features [N, widths[-1]]."""
        x = self.embedding(images)
        for stage in self.stages:
            for block in stage:
                x = block(x)
        return jnp.mean(x, axis=(1, 2))

    def __call__(self, images: jax.Array) -> jax.Array:
        """Float images [N, H, W, C] -> logits [N, num_classes]."""
        return self.head(self.features(images))


def resnet(variant: str, num_classes: int, *, rngs: nnx.Rngs, in_channels: int = 1) -> ResNet:
    """A :class:`ResNet` of a named size (a key of :data:`VARIANTS`), in training mode."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown ResNet variant {variant!r}; choose from {sorted(VARIANTS)}")
    v = VARIANTS[variant]
    return ResNet(
        num_classes,
        v["widths"],  # type: ignore[arg-type]
        v["blocks"],  # type: ignore[arg-type]
        stem_stride=v["stem_stride"],  # type: ignore[arg-type]
        in_channels=in_channels,
        rngs=rngs,
    )


def build_model(
    model_config: ml_collections.ConfigDict, num_classes: int, *, seed: int = 0
) -> ResNet:
    """The ResNet described by ``config.model`` (``variant``), initialised from ``seed``."""
    return resnet(model_config.variant, num_classes, rngs=nnx.Rngs(seed))


def num_params(model: nnx.Module) -> int:
    """Number of trainable parameters (``nnx.Param``; the running statistics excluded)."""
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
