"""Runs the paper toy suite: ``python -m experiments.paper_toy --config=...[:demo|:quick]``.

``--config`` is ``experiments/paper_toy/config.py`` (with ``--config.<field>=value``
overrides); the other flags are :mod:`experiments.common.suite_cli`'s.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ml_collections import config_flags

from experiments.common import suite_cli
from experiments.paper_toy import report, suite

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/paper_toy/config.py")


def _outputs(res: dict[str, Any], out: Path) -> Path:
    report.plot(res, out)
    return report.write_markdown(res, out / "results.md")


def main(argv: list[str]) -> None:
    del argv
    logging.getLogger().setLevel(logging.INFO)
    runner = suite_cli.runner("paper_toy")
    res = suite.run(suite.Suite(_CONFIG.value, runner, progress=suite_cli.progress()))
    suite_cli.finish("paper_toy", runner, res, _outputs)
