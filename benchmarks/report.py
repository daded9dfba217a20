"""Rewrites the tables of ``benchmarks/RESULTS.md`` from the JSON files in ``benchmarks/results/``.

Every table in ``RESULTS.md`` sits between markers::

    <!-- report:NAME -->
    ...generated...
    <!-- /report:NAME -->

and is rendered from ``benchmarks/results/NAME.json`` by the benchmark's own
``markdown`` function, under a line that says where the figures come from
(command, commit, machine, load). A missing file renders as a note naming the
command that writes it. ``python -m benchmarks.report`` rewrites the blocks in
place; ``--check`` exits with status 1 and names the stale blocks instead
(``tests/benchmarks/test_benchmarks_report.py`` runs it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import collectives, compile_time, large_models, memory, step_cost, update_cost

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PAGE = ROOT / "benchmarks" / "RESULTS.md"


#: block (= file ``results/<block>.json``) -> (renderer, the command that writes the file).
BLOCKS: dict[str, tuple[Callable[[dict[str, Any]], str], str]] = {
    "update_cost": (
        update_cost.report_markdown,
        "python -m benchmarks.update_cost --sizes 1e7 --dtypes float32 bfloat16 --rounds 7 "
        "--no-phase-timing --methods adam profit_sgd_n1 profit_sgd_n2 profit_sgd_n3 "
        "profit_auto_n1 profit_lean sam --json benchmarks/results/update_cost.json",
    ),
    "update_cost_1e8": (
        update_cost.report_markdown,
        "python -m benchmarks.update_cost --sizes 1e8 --dtypes float32 --rounds 3 "
        "--no-phase-timing --methods adam profit_sgd_n1 profit_auto_n1 profit_lean "
        "--json benchmarks/results/update_cost_1e8.json",
    ),
    "update_cost_phases": (
        update_cost.report_markdown,
        "python -m benchmarks.update_cost --sizes 1e7 --dtypes float32 --rounds 5 "
        "--methods adam profit_sgd_n1 profit_sgd_n3 profit_auto_n1 profit_auto_n3 profit_lean "
        "sam lookahead --json benchmarks/results/update_cost_phases.json",
    ),
    "update_cost_passes": (
        update_cost.report_markdown,
        "python -m benchmarks.update_cost --sizes 1e7 --dtypes float32 bfloat16 --no-timing "
        "--json benchmarks/results/update_cost_passes.json",
    ),
    "step_cost": (
        step_cost.markdown,
        "python -m benchmarks.step_cost --json benchmarks/results/step_cost.json",
    ),
    "step_cost_lm": (
        step_cost.markdown,
        "python -m benchmarks.step_cost --workloads lm_full lm_lora --methods adamw "
        "profit_adamw_sgd_n1 profit_adamw_auto_n1 --rounds 9 "
        "--json benchmarks/results/step_cost_lm.json",
    ),
    "memory": (
        memory.markdown,
        "python -m benchmarks.memory --json benchmarks/results/memory.json",
    ),
    "compile_time": (
        compile_time.markdown,
        "python -m benchmarks.compile_time --json benchmarks/results/compile_time.json",
    ),
    "collectives": (
        collectives.markdown,
        "python -m benchmarks.collectives --devices 8 --width 512 --depth 4 "
        "--configs adam,profit,profit_auto,profit_per_tensor "
        "--json benchmarks/results/collectives.json",
    ),
    "large_models": (
        large_models.markdown,
        "python -m benchmarks.large_models run --models B/16,L/16 --batch 2 --rounds 2 "
        "--steps 4 --warmup 2 --json benchmarks/results/large_models.json",
    ),
    "large_models_fit": (
        large_models.markdown,
        "python -m benchmarks.large_models fit --families L,G --depths 1,4 --batch 2 "
        "--budget-gib 22 --json benchmarks/results/large_models_fit.json",
    ),
}


def provenance(res: dict[str, Any]) -> str:
    """Where a results file's figures come from: command, commit, machine, versions, load."""
    prov, env = res.get("environment", {}), res.get("env", {})
    commit = str(prov.get("git_commit", "?"))[:12]
    if prov.get("git_dirty"):
        commit += " (uncommitted changes)"
    load = env.get("load_average")
    load_s = "not recorded" if not load else " / ".join(f"{x:.2f}" for x in load)
    return (
        f"`PYTHONPATH=. {prov.get('command', '?')}`; commit {commit}; "
        f"{env.get('device', '?')}, {env.get('cpu_model', '?')}, {env.get('cpu_count', '?')} "
        f"cores; jax {env.get('jax', '?')}, optax {env.get('optax', '?')}; "
        f"{str(prov.get('date', env.get('time', '?')))[:19]}; "
        f"load average (1/5/15 min) at the start {load_s}."
    )


def render(name: str, results: Path = RESULTS) -> str:
    """The block ``name``: its file's tables under their provenance, or a note that the file
    is missing, naming the command that writes it."""
    renderer, command = BLOCKS[name]
    path = results / f"{name}.json"
    if not path.exists():
        return (
            f"**Not measured at this commit**: `benchmarks/results/{name}.json` does not "
            f"exist. To write it: `PYTHONPATH=. {command}`, then `python -m benchmarks.report` "
            "(a benchmark that times runs on a quiet machine).\n"
        )
    res = json.loads(path.read_text())
    return f"From `benchmarks/results/{name}.json`: {provenance(res)}\n\n{renderer(res).strip()}\n"


def main(argv: list[str] | None = None) -> int:
    from experiments.report import rewrite

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--page", type=Path, default=PAGE)
    parser.add_argument("--results", type=Path, default=RESULTS)
    parser.add_argument("--check", action="store_true", help="only report stale blocks")
    args = parser.parse_args(argv)
    text = args.page.read_text()
    new, changed = rewrite(text, {name: render(name, args.results) for name in BLOCKS})
    missing = sorted(set(BLOCKS) - {n for n in BLOCKS if f"<!-- report:{n} -->" in text})
    if missing:
        print(f"{args.page} has no block for {missing}")
    if args.check:
        if changed:
            print(f"stale blocks in {args.page}: {changed}; run python -m benchmarks.report")
        return 1 if changed or missing else 0
    if changed:
        args.page.write_text(new)
    print(f"rewrote {changed}" if changed else f"{args.page} is current")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
