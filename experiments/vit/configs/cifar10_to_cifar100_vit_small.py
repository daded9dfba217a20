"""The paper's protocol with a ViT-Small: pretrain on CIFAR-10, fine-tune on CIFAR-100.

Same as ``cifar10_to_cifar100_vit_tiny.py`` with S sizes (width 384, depth 12,
6 heads, MLP 1536). Meant for a GPU.

    python -m experiments.vit.main \
        --config experiments/vit/configs/cifar10_to_cifar100_vit_small.py --workdir runs/vit_s
"""

import ml_collections

from experiments.vit.configs import cifar10_to_cifar100_vit_tiny


def get_config() -> ml_collections.ConfigDict:
    """CIFAR-10 -> CIFAR-100 with a ViT-S/4."""
    return cifar10_to_cifar100_vit_tiny.get_config(variant="S")
