"""Runs a ResNet suite: ``python -m experiments.resnet --config=experiments/resnet/config.py:MODE``.

Modes: see :func:`experiments.resnet.config.get_config`; the flags are
:mod:`experiments.common.suite_cli`'s; the outputs are the recipe's
(:mod:`experiments.recipe.report`), in ``resnet_<mode>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments.common import results, suite_cli
from experiments.recipe import report
from experiments.resnet import suite

CONFIG_FILE = "experiments/resnet/config.py"


def write_outputs(res: dict[str, Any], out: Path) -> Path:
    report.plot(res, out)
    return results.write_text_atomic(
        out / "results.md", report.page(res, f"resnet_{res['config']['mode']}")
    )


def main() -> None:
    suite_cli.main("resnet", CONFIG_FILE, suite.Suite, write_outputs)
