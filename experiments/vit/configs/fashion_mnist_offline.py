"""Offline ViT task on real Fashion-MNIST: pretrain on classes 0-4, fine-tune on classes 5-9.

Old task: T-shirt/top, Trouser, Pullover, Dress, Coat (5-way). New task:
Sandal, Shirt, Sneaker, Bag, Ankle boot (5-way). As in CIFAR-10 -> CIFAR-100,
the two tasks have disjoint label sets and disjoint images from the same image
distribution, and the new task needs a new head; "old" accuracy is measured on
the old classes' test images with the frozen pretrained head. Sized for a
2-core CPU: a ViT-mini (width 64, depth 4, 4 heads, patch 7 -> 16 tokens + cls).

    python -m experiments.vit.main \
        --config experiments/vit/configs/fashion_mnist_offline.py --workdir runs/vit_fmnist
"""

import ml_collections

from experiments.common.config import methods, task, transfer_config

FASHION_MNIST_METHODS = methods(
    {
        "sgd": 3e-2,
        "adam": 3e-4,
        "adamw": 3e-4,
        "head_only": 3e-4,
        "lookahead": 3e-4,
        "sam": 3e-4,
        "freeze_embed_sgd": 3e-2,
        "l2sp": 3e-4,
        "ftp": 3e-4,
        "profit": 3e-4,  # PROFIT runs at its main optimizer's baseline learning rate
        "profit_sgd": 3e-2,
    },
    # The committed Fashion-MNIST results ran the automatic reference step at ref_scale 0.01,
    # the core's default until 2026-11-23 (now profit_optax.DEFAULT_REF_SCALE = 3e-4).
    profit={"ref_scale": 0.01},
    profit_sgd={"ref_scale": 0.01},
)


def get_config() -> ml_collections.ConfigDict:
    """The offline Fashion-MNIST config (all real data, all 60k/10k images used)."""
    config = transfer_config()
    config.name = "ViT-mini, Fashion-MNIST classes 0-4 -> 5-9"
    config.old_task = task("fashion_mnist", classes=(0, 1, 2, 3, 4))
    config.new_task = task("fashion_mnist", classes=(5, 6, 7, 8, 9))
    config.model = ml_collections.ConfigDict(
        {"variant": "mini", "patch_size": 7, "pool": "tok", "dropout_rate": 0.0}
    )
    # Garments and shoes have a canonical orientation in Fashion-MNIST: no flips.
    config.augment.crop_padding = 2
    config.augment.flip = False
    config.pretrain.num_steps = 1500  # ~6.4 epochs of the 30k old-task images
    config.pretrain.batch_size = 128
    config.pretrain.learning_rate = 1e-3
    config.pretrain.warmup_steps = 100
    config.pretrain.eval_every = 300
    # 300 = 50 cycles of Lookahead (period 6), 150 of PROFIT/SAM (period 2);
    # ~1.3 epochs of the 30k new-task images. Evaluations at 0, 150, 300.
    config.finetune.num_steps = 300
    config.finetune.batch_size = 128
    config.finetune.eval_every = 150
    config.finetune.seeds = (0, 1, 2)
    config.finetune.methods = FASHION_MNIST_METHODS
    config.eval_batch_size = 1000
    return config
