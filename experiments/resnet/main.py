"""Runs a ResNet suite: ``python -m experiments.resnet --config=experiments/resnet/config.py:MODE``.

Modes: see :func:`experiments.resnet.config.get_config`; the flags are
:mod:`experiments.common.suite_cli`'s; the outputs are the recipe's
(:func:`experiments.recipe.main.write_outputs`), tables named ``resnet_<mode>_...``.
"""

from __future__ import annotations

import functools

from experiments.common import suite_cli
from experiments.recipe.main import write_outputs
from experiments.resnet import suite

CONFIG_FILE = "experiments/resnet/config.py"


def main() -> None:
    outputs = functools.partial(write_outputs, suite_name="resnet")
    suite_cli.main("resnet", CONFIG_FILE, suite.Suite, outputs)
