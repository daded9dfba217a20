"""The paper's protocol with a ViT-Tiny: pretrain on CIFAR-10, fine-tune on CIFAR-100.

"old" = CIFAR-10 test accuracy of the fine-tuned backbone with the frozen
CIFAR-10 head from pretraining; "new" = CIFAR-100 test accuracy with the new
head. Both datasets come from TFDS (downloaded on first use). Ti sizes (width
192, depth 12, 3 heads, MLP 768) with 4x4 patches on the 32x32 images (64
tokens + cls), trained from scratch on CIFAR-10. Meant for a GPU.

    python -m experiments.vit.main \
        --config experiments/vit/configs/cifar10_to_cifar100_vit_tiny.py --workdir runs/vit_ti
"""

import ml_collections

from experiments.common.config import methods, task, transfer_config

CIFAR_METHODS = methods(
    {
        "sgd": 1e-2,
        "adam": 1e-4,
        "adamw": 1e-4,
        "head_only": 1e-4,
        "lookahead": 1e-4,
        "sam": 1e-4,
        "freeze_embed_sgd": 1e-2,
        "l2sp": 1e-4,
        "ftp": 1e-4,
        "profit": 1e-4,
    }
)


def get_config(variant: str = "Ti") -> ml_collections.ConfigDict:
    """CIFAR-10 -> CIFAR-100 with ViT ``variant`` (4x4 patches)."""
    config = transfer_config()
    config.name = f"ViT-{variant}/4, CIFAR-10 -> CIFAR-100"
    config.old_task = task("cifar10")
    config.new_task = task("cifar100")
    config.model = ml_collections.ConfigDict(
        {"variant": variant, "patch_size": 4, "pool": "tok", "dropout_rate": 0.0}
    )
    config.augment.crop_padding = 4
    config.augment.flip = True
    config.pretrain.num_steps = 19_600  # 100 epochs of CIFAR-10 at batch 256
    config.pretrain.batch_size = 256
    config.pretrain.learning_rate = 1e-3
    config.pretrain.warmup_steps = 1_000
    config.pretrain.weight_decay = 0.05
    config.pretrain.eval_every = 1_960
    config.finetune.num_steps = 3_840  # ~20 epochs of CIFAR-100 at batch 256
    config.finetune.batch_size = 256
    config.finetune.eval_every = 480
    config.finetune.seeds = (0, 1, 2)
    config.finetune.methods = CIFAR_METHODS
    config.eval_batch_size = 1000
    # config.quick: the same code path on a mini model with tiny budgets.
    config.quick_overrides = ml_collections.ConfigDict(
        {"model": {"variant": "mini"}, "name": "ViT-mini/4 (quick), CIFAR-10 -> CIFAR-100"}
    )
    return config
