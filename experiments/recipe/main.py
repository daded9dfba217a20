"""Runs a recipe suite: ``python -m experiments.recipe --config=experiments/recipe/config.py:MODE``.

Modes: see :func:`experiments.recipe.config.get_config`; the flags are
:mod:`experiments.common.suite_cli`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments.common import results, suite_cli
from experiments.recipe import report, suite

CONFIG_FILE = "experiments/recipe/config.py"


def write_outputs(res: dict[str, Any], out: Path, suite_name: str = "recipe") -> Path:
    """The figures and ``results.md`` (its tables named ``<suite_name>_<mode>_...``)."""
    report.plot(res, out)
    return results.write_text_atomic(
        out / "results.md", report.page(res, f"{suite_name}_{res['config']['mode']}")
    )


def main() -> None:
    suite_cli.main("recipe", CONFIG_FILE, suite.Suite, write_outputs)
