"""Runs the paper toy suite: ``python -m experiments.paper_toy --config=...[:demo|:quick]``.

``--config`` is ``experiments/paper_toy/config.py`` (with ``--config.<field>=value``
overrides); the flags are :mod:`experiments.common.suite_cli`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments.common import results, suite_cli
from experiments.paper_toy import report, suite

CONFIG_FILE = "experiments/paper_toy/config.py"


def write_outputs(res: dict[str, Any], out: Path) -> Path:
    report.plot(res, out)
    return results.write_text_atomic(out / "results.md", report.page(res, "paper_toy"))


def main() -> None:
    suite_cli.main("paper_toy", CONFIG_FILE, suite.Suite, write_outputs)
