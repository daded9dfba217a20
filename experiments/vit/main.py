"""Pretrain a ViT on the old task, fine-tune it with every method on the new task.

    python -m experiments.vit.main \
        --config experiments/vit/configs/fashion_mnist_offline.py --workdir runs/vit_fmnist

See docs/vit_experiment.md.
"""

from __future__ import annotations

import ml_collections
from absl import app

from experiments.common import cli
from experiments.vit.model import ViT, vit


def build_model(model_config: ml_collections.ConfigDict, num_classes: int) -> ViT:
    """The ViT described by ``config.model`` (variant, patch_size, pool, dropout_rate)."""
    return vit(
        model_config.variant,
        num_classes,
        patch_size=model_config.patch_size,
        pool=model_config.pool,
        dropout_rate=model_config.dropout_rate,
    )


main = cli.make_main(build_model)

if __name__ == "__main__":
    app.run(main)
