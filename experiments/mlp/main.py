"""Pretrain an MLP on the old task, fine-tune it with every method on the new task.

Same pipeline as :mod:`experiments.vit.main`; only the model differs::

    python -m experiments.mlp.main \
        --config experiments/mlp/configs/fashion_mnist_offline.py --workdir runs/mlp_fmnist
"""

from __future__ import annotations

from absl import app

from experiments.common import cli
from experiments.mlp.model import build_model

main = cli.make_main(build_model)

if __name__ == "__main__":
    app.run(main)
