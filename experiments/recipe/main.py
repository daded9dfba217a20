"""Runs a recipe suite: ``python -m experiments.recipe --config=experiments/recipe/config.py:MODE``.

Modes: see :func:`experiments.recipe.config.get_config`; the other flags are
:mod:`experiments.common.suite_cli`'s.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ml_collections import config_flags

from experiments.common import suite_cli
from experiments.recipe import report, suite

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/recipe/config.py")


def main(argv: list[str]) -> None:
    del argv
    logging.getLogger().setLevel(logging.INFO)
    runner = suite_cli.runner("recipe")
    res = suite.run(suite.Suite(_CONFIG.value, runner, progress=suite_cli.progress()))

    def outputs(res: dict[str, Any], out: Path) -> Path:
        report.plot(res, out)
        return report.write_markdown(res, out / "results.md", f"recipe_{_CONFIG.value.mode}")

    suite_cli.finish("recipe", runner, res, outputs)
