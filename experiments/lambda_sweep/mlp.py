"""λ_ref sensitivity sweep on the Fashion-MNIST MLP (classes 0-4 -> 5-9).

The ``profit`` entry of ``experiments/mlp/configs/fashion_mnist_offline.py`` (Adam, λ_main =
3e-4): fixed SGD reference λ_ref = λ_main × ratio and the automatic reference step at several
``ref_scale`` values, one shared pretraining, the config's seeds and update calls. See
:mod:`experiments.lambda_sweep.transfer` for the protocol (validation = half of each test split).

Usage (the grid and settings: ``experiments/lambda_sweep/configs/mlp.py``)::

    python -m experiments.lambda_sweep.mlp [--config=experiments/lambda_sweep/configs/mlp.py:quick]
        [--config.seeds="(0,1,2)"] [--out=DIR] [--workdir=DIR]
"""

from __future__ import annotations

from experiments.lambda_sweep import transfer
from experiments.mlp.configs.fashion_mnist_offline import get_config
from experiments.mlp.model import build_model

if __name__ == "__main__":
    transfer.cli("mlp", get_config, build_model)
