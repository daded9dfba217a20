"""Offline MLP task on real Fashion-MNIST: pretrain on classes 0-4, fine-tune on classes 5-9.

The same old/new split as ``experiments/vit/configs/fashion_mnist_offline.py``
with a 784-256-256 MLP (``Dense_0`` = embedding, ``Dense_1``, ``head``).

    python -m experiments.mlp.main \
        --config experiments/mlp/configs/fashion_mnist_offline.py --workdir runs/mlp_fmnist
"""

import ml_collections

from experiments.vit.configs import fashion_mnist_offline as vit_config


def get_config() -> ml_collections.ConfigDict:
    """The ViT offline config with the model replaced by an MLP."""
    config = vit_config.get_config()
    config.name = "MLP 256-256, Fashion-MNIST classes 0-4 -> 5-9"
    config.model = ml_collections.ConfigDict({"hidden": (256, 256)})
    return config
