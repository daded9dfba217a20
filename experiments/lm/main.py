"""Runs a language-model suite: ``python -m experiments.lm --config=experiments/lm/config.py:MODE``.

Modes: see :func:`experiments.lm.config.get_config` (``pilot`` runs
:mod:`experiments.lm.pilot` instead of the protocol); the flags are
:mod:`experiments.common.suite_cli`'s.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from experiments.common import results, suite_cli
from experiments.common import suite as framework
from experiments.lm import pilot, report, suite

CONFIG_FILE = "experiments/lm/config.py"


def run(s: framework.Suite) -> dict[str, Any]:
    """The protocol, or the pilot for a config with a ``pilot`` section."""
    return pilot.run(s) if "pilot" in s.cfg else framework.run(s)


def write_outputs(res: dict[str, Any], out: Path) -> Path:
    if "tasks" in res:  # the pilot
        pilot.plot(res, out)
        return results.write_text_atomic(out / "results.md", pilot.page(res))
    report.plot(res, out)
    return results.write_text_atomic(
        out / "results.md", report.page(res, f"lm_{res['config']['mode']}")
    )


def main() -> None:
    suite_cli.main("lm", CONFIG_FILE, suite.Suite, write_outputs, protocol_fn=run)
