"""Rewrites the generated tables of the README and the docs from the committed results files.

Every experiment table in the files of :data:`DOCUMENTS` sits between markers::

    <!-- report:NAME -->
    ...generated...
    <!-- /report:NAME -->

and is rendered by this module from a committed ``results.json`` (never typed
by hand). ``python -m experiments.report`` rewrites the blocks in place, the cross-task figure
``experiments/results/verdict_diagnostics.png`` and each suite's ``results.md`` (a
rendering of its ``results.json``); ``--check`` exits with status 1 and names the stale
blocks and files instead. Links in a rendered block are relative to the repository root;
each is written relative to the file that holds the block.
``tests/experiments/test_report.py`` runs the check, so the README and the docs cannot drift
from the files.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from experiments import verdict
from experiments.common import results

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "experiments" / "results"


def _load(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.exists() else None


def _suites(root: Path) -> dict[str, str]:
    """Every suite's blocks, named ``<results folder>_<table>``."""
    out: dict[str, str] = {}
    for folder, module, _, _ in verdict.SUITES:
        res = _load(root / folder / "results.json")
        if res is not None:
            out.update(importlib.import_module(module).blocks(res, folder))
    return out


def _verdict(root: Path) -> dict[str, str]:
    if not verdict.rows(root):
        return {}
    out = {
        "verdict": verdict.table(root),
        "verdict_summary": verdict.summary_table(root),
        "verdict_figures": verdict.figures_table(root),
    }
    if verdict.diagnostic_rows(root):
        out["verdict_diagnostics"] = verdict.diagnostics_table(root)
    return out


#: The update-cost benchmark's results behind the cost table (docs/cost.md).
COST_RESULTS = ROOT / "benchmarks" / "results" / "update_cost.json"


#: The training-step benchmark of the language model (issue 30) behind docs/cost.md's LM table.
LM_STEP_RESULTS = ROOT / "benchmarks" / "results" / "step_cost_lm.json"


def _cost(root: Path) -> dict[str, str]:
    del root  # benchmarks, not experiments: their files live under benchmarks/results
    from benchmarks import report as benchmarks_report
    from benchmarks import update_cost

    out = {}
    res = _load(COST_RESULTS)
    if res:
        out["cost"] = update_cost.readme_table(res)
    if LM_STEP_RESULTS.exists():
        out["lm_step_cost"] = benchmarks_report.render(LM_STEP_RESULTS.stem)
    return out


RENDERERS: tuple[Callable[[Path], dict[str, str]], ...] = (_suites, _verdict, _cost)

_BLOCK = re.compile(
    r"(<!-- report:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /report:(?P=name) -->)", re.S
)


#: The files that hold generated blocks, relative to the repository root: the README (the
#: verdict's summary), the full results and the cost table. Each block is in exactly one.
DOCUMENTS = ("README.md", "docs/results.md", "docs/cost.md")

_LINK = re.compile(r"\]\((?![a-z]+:|#|/)([^)\s]+)\)")


def rebase_links(body: str, document: str) -> str:
    """``body``'s relative Markdown links, written relative to the repository root, made
    relative to ``document``'s folder (``experiments/x.png`` in ``docs/results.md`` is
    ``../experiments/x.png``)."""
    folder = os.path.dirname(document) or "."
    return _LINK.sub(lambda m: f"]({os.path.relpath(m[1], folder)})", body)


def render_all(root: Path = RESULTS) -> dict[str, str]:
    """Every renderable block, by name, from the results files under ``root``."""
    out: dict[str, str] = {}
    for render in RENDERERS:
        out.update(render(root))
    return out


def stale_markdown(root: Path = RESULTS) -> dict[Path, str]:
    """Each suite's ``results.md`` that differs from its rendering from the suite's
    ``results.json``, with the rendering (the file is a view of the JSON, like the blocks)."""
    out = {}
    for folder, module, _, _ in verdict.SUITES:
        res = _load(root / folder / "results.json")
        if res is None:
            continue
        path = root / folder / "results.md"
        text = importlib.import_module(module).page(res, folder)
        if not path.exists() or path.read_text() != text:
            out[path] = text
    return out


def rewrite(
    text: str, blocks: dict[str, str], document: str = "README.md"
) -> tuple[str, list[str]]:
    """``text`` (of ``document``, relative to the repository root) with every known block
    replaced; also the names of blocks that changed.

    Raises:
      KeyError: the text has a block that no results file renders.
    """
    changed: list[str] = []

    def sub(m: re.Match[str]) -> str:
        name = m["name"]
        if name not in blocks:
            raise KeyError(f"{document} block {name!r} has no results file to render it from")
        body = rebase_links(blocks[name], document).rstrip("\n") + "\n"
        if body != m["body"]:
            changed.append(name)
        return m.group(1) + body + m.group(4)

    return _BLOCK.sub(sub, text), changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only report stale blocks")
    args = parser.parse_args(argv)
    blocks = render_all()
    stale: dict[str, list[str]] = {}
    for document in DOCUMENTS:
        path = ROOT / document
        new, changed = rewrite(path.read_text(), blocks, document)
        if changed:
            stale[document] = changed
            if not args.check:
                path.write_text(new)
    markdown = stale_markdown()
    if args.check:
        for document, changed in stale.items():
            print(f"stale {document} blocks: {changed}; run python -m experiments.report")
        if markdown:
            print(
                f"stale results.md: {sorted(map(str, markdown))}; run python -m experiments.report"
            )
        return 1 if stale or markdown else 0
    for document, changed in stale.items():
        print(f"rewrote {document}: {changed}")
    if not stale:
        print("generated blocks are current")
    for path, body in markdown.items():
        results.write_text_atomic(path, body)
        print(f"rewrote {path}")
    figure = verdict.plot_diagnostics(RESULTS, RESULTS / "verdict_diagnostics.png")
    if figure is not None:
        print(f"wrote {figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
