"""λ_ref sensitivity sweep on the Fashion-MNIST ViT-mini (classes 0-4 -> 5-9).

The ``profit`` entry of ``experiments/vit/configs/fashion_mnist_offline.py`` (Adam, λ_main =
3e-4): fixed SGD reference λ_ref = λ_main × ratio and the automatic reference step (default
``ref_scale`` only, by default: CPU time), one shared pretraining (``--pretrained-from`` reuses an
existing pipeline workdir's checkpoint), the config's update calls. See
:mod:`experiments.lambda_sweep.transfer` for the protocol (validation = half of each test split).

Usage (the grid and settings: ``experiments/lambda_sweep/configs/vit.py``)::

    python -m experiments.lambda_sweep.vit [--config=experiments/lambda_sweep/configs/vit.py:quick]
        [--config.seeds="(0,1)"] [--pretrained_from=DIR] [--out=DIR]
"""

from __future__ import annotations

from experiments.lambda_sweep import transfer
from experiments.vit.configs.fashion_mnist_offline import get_config
from experiments.vit.model import build_model

if __name__ == "__main__":
    transfer.cli("vit", get_config, build_model)
