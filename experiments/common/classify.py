"""Image classification for the suites: old/new task data, loss, heads, pretraining optimizer.

The helpers a classification suite (``experiments.recipe``) shares: the four datasets of
an old-task -> new-task pair (TFDS, class subsets), the training loss (augmented,
normalised images), inference logits, parameter initialisation, the pretraining
optimizer (AdamW with warm-up and cosine decay), the head/embedding masks of the
registry methods, and the new-task starting point (pretrained backbone, zero ``head``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import optax

from experiments.common.data import (
    ArrayDataset,
    load_tfds_split,
    normalize,
    random_crop_flip,
    task_subset,
)
from experiments.common.train import LossFn
from experiments.common.train import pretrain_optimizer as pretrain_optimizer  # re-exported

PyTree = Any

#: Top-level parameter name of the classification head (contract with profit_optax.masks).
HEAD = "head"


@dataclasses.dataclass(frozen=True)
class TransferData:
    """Train/test splits of the old (pretraining) and new (fine-tuning) tasks."""

    old_train: ArrayDataset
    old_test: ArrayDataset
    new_train: ArrayDataset
    new_test: ArrayDataset


def load_transfer_data(config: ml_collections.ConfigDict) -> TransferData:
    """Loads the four datasets named by ``config.old_task`` and ``config.new_task``.

    Each TFDS split is read once, also when both tasks are class subsets of it.
    """
    data_dir = config.get("data_dir")
    splits: dict[tuple[str, str], ArrayDataset] = {}

    def load(task: ml_collections.ConfigDict, which: str) -> ArrayDataset:
        key = (task.dataset, task[f"{which}_split"])
        if key not in splits:
            splits[key] = load_tfds_split(*key, data_dir=data_dir)
        return task_subset(
            splits[key],
            classes=task.get("classes"),
            max_examples=task.get(f"max_{which}_examples"),
            subset_seed=task.get("subset_seed", 0),
        )

    return TransferData(
        old_train=load(config.old_task, "train"),
        old_test=load(config.old_task, "test"),
        new_train=load(config.new_task, "train"),
        new_test=load(config.new_task, "test"),
    )


def make_loss_fn(model: nn.Module, augment: ml_collections.ConfigDict) -> LossFn:
    """Softmax cross-entropy on augmented, normalised images; reports train accuracy."""

    def loss_fn(params, batch, rng):
        aug_rng, dropout_rng = jax.random.split(rng)
        images = random_crop_flip(
            aug_rng, batch["image"], crop_padding=augment.crop_padding, flip=augment.flip
        )
        logits = model.apply(
            {"params": params}, normalize(images), train=True, rngs={"dropout": dropout_rng}
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        accuracy = (jnp.argmax(logits, -1) == batch["label"]).mean()
        return loss, {"accuracy": accuracy}

    return loss_fn


def make_apply_fn(model: nn.Module) -> Callable[[PyTree, jax.Array], jax.Array]:
    """``(params, uint8 images) -> logits`` in inference mode."""
    return lambda params, images: model.apply({"params": params}, normalize(images), train=False)


def init_params(model: nn.Module, sample: ArrayDataset, rng: jax.Array) -> PyTree:
    """Initialises ``model`` for the image shape of ``sample``."""
    dummy = jnp.zeros((1, *sample.images.shape[1:]), jnp.float32)
    return model.init(rng, dummy, train=False)["params"]


def default_mask_fn(params: PyTree) -> dict[str, PyTree]:
    """Head and embedding masks by ``profit_optax.masks``' default rules.

    ``head`` is the head; ``embedding`` (ViT) or ``Dense_0`` (MLP) the embedding.
    """
    from profit_optax import masks

    return {"head_mask": masks.head_mask(params), "embed_mask": masks.embedding_mask(params)}


def finetune_params(pretrained: PyTree, new_model: nn.Module, sample: ArrayDataset) -> PyTree:
    """Pretrained backbone + a zero-initialised ``head`` for ``new_model`` (a linen model
    initialised for the images of ``sample``): :func:`with_zero_head`."""
    fresh = jax.eval_shape(lambda: init_params(new_model, sample, jax.random.key(0)))
    return with_zero_head(pretrained, fresh)


def with_zero_head(pretrained: PyTree, fresh: PyTree) -> PyTree:
    """The new task's start: ``pretrained``'s backbone and a zero ``head`` shaped as
    ``fresh``'s (the new-task model's parameters, or their shapes); the backbones must match.

    Zero-initialising the new head is big_vision's fine-tuning default; it also
    makes the starting point identical for every seed and method.
    """
    backbone = {k: v for k, v in pretrained.items() if k != HEAD}
    shapes = lambda t: jax.tree.map(lambda x: (x.shape, x.dtype), t)
    if shapes(backbone) != shapes({k: v for k, v in fresh.items() if k != HEAD}):
        raise ValueError("the new-task model's backbone does not match the pretrained one")
    head = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), fresh[HEAD])
    return {**backbone, HEAD: head}
