"""Pretrain a ViT on the old task, fine-tune it with every method on the new task.

    python -m experiments.vit.main \
        --config experiments/vit/configs/fashion_mnist_offline.py --workdir runs/vit_fmnist

See docs/vit_experiment.md.
"""

from __future__ import annotations

from absl import app

from experiments.common import cli
from experiments.vit.model import build_model

main = cli.make_main(build_model)

if __name__ == "__main__":
    app.run(main)
