"""The pilot that fixes the language-model suites' budget (``config.py:pilot``).

Before the suites run, AdamW at three learning rates fine-tunes the pretrained model on each
task (full fine-tuning, one tuning seed, ``finetune.budget`` = 600 calls, old- and
new-corpus *validation* bits per byte every 50 calls). Its page shows where the new-corpus
curve flattens: for candidate budgets B, the validation bits per byte at B and how much it
fell over the last 30% of B (the plateau check's window). Only validation windows are read
(and the pretrained model's test bits per byte, recorded by pretraining as every suite
records it); the runs share the suites' cache, pretraining included.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiments.common import plotting, results, tables
from experiments.common import suite as framework
from experiments.lm import config as lm_config

#: Budgets (update calls) the page reads the curves at.
CANDIDATE_BUDGETS = (150, 200, 300, 450, 600)


def task_config(cfg: Any, task: str) -> Any:
    """The pilot's config for one task: the pilot's settings, that task's corpora and
    pretraining length (so the pretraining job is the task's suites' own)."""
    kind, old, new = lm_config.TASKS[task]
    out = cfg.copy_and_resolve_references()
    out.task.update({"kind": kind, "old": old, "new": new})
    out.pretrain.num_steps = cfg.pilot.pretrain_steps[old]
    out.name = f"pilot: {task}"
    return out


def run(suite: framework.Suite) -> dict[str, Any]:
    """Pretrains (or reads) every task's model and runs the pilot's fine-tuning runs on the
    validation split; the pilot's results dict."""
    cfg = suite.cfg
    budget = int(cfg.finetune.budget)
    out: dict[str, Any] = {
        "name": cfg.name,
        "config": cfg.to_dict(),
        "metric": suite.metric.to_json(),
        "tasks": {},
    }
    for task in cfg.pilot.tasks:
        one = type(suite)(task_config(cfg, task), suite.runner, progress=suite.progress)
        pretrained = one.pretrain()
        lrs = tuple(cfg.pilot.learning_rates)
        runs = one.finetune_all(
            [("adamw", {"learning_rate": lr}, cfg.pilot.seed, "val", budget) for lr in lrs]
        )
        out["tasks"][task] = {
            "name": one.cfg.name,
            "pretrained": pretrained,
            "runs": {f"{lr:g}": r for lr, r in zip(lrs, runs, strict=True)},
        }
    return out


def _at(curve: list[Mapping[str, Any]], calls: int) -> Mapping[str, Any] | None:
    """The last curve point at or before ``calls``."""
    before = [p for p in curve if p["step"] <= calls]
    return before[-1] if before else None


def budget_table(task: Mapping[str, Any]) -> str:
    """Per learning rate and candidate budget B: new- and old-corpus validation bits per byte
    at B, and the fall of the new one over the last 30% of B."""
    header = ["AdamW lr", *(f"B = {b}: new / old (fall over last 30%)" for b in CANDIDATE_BUDGETS)]
    rows = []
    for lr, run in task["runs"].items():
        cells = [lr]
        for b in CANDIDATE_BUDGETS:
            end, begin = _at(run["curve"], b), _at(run["curve"], int(0.7 * b))
            if end is None or begin is None or end["step"] != b:
                cells.append("–")
                continue
            fall = begin["val_new"] - end["val_new"]
            cells.append(f"{end['val_new']:.3f} / {end['val_old']:.3f} ({fall:+.3f})")
        rows.append(cells)
    return tables.table(header, rows)


def page(res: Mapping[str, Any]) -> str:
    parts = [f"# {res['name']}", ""]
    for name, task in res["tasks"].items():
        pre = task["pretrained"]
        curve = ", ".join(f"{h['step']}: {h['val_bpb']:.3f}" for h in pre["history"])
        start = pre["start"]["val"]
        parts += [
            f"## {name}",
            "",
            f"Pretrained: validation {pre['val_bpb']:.3f} bpb (curve: {curve}); test "
            f"{pre['test_bpb']:.3f}. Before fine-tuning: old {start['old']:.3f}, new "
            f"{start['new']:.3f} bpb (validation).",
            "",
            budget_table(task),
            "",
            "Validation bits per byte (lower is better); the fall is the plateau check's "
            f"quantity (the suites call < {res['metric']['plateau_tolerance']} bpb plateaued).",
            "",
        ]
    parts.append(results.provenance(res))
    return "\n".join(parts) + "\n"


def plot(res: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """``pilot_<task>.png``: old and new validation bits per byte along the runs."""
    paths = []
    for name, task in res["tasks"].items():
        rows = {f"AdamW lr {lr}": {"runs": [run]} for lr, run in task["runs"].items()}
        paths.append(
            plotting.plot_row_curves(
                rows,
                out_dir / f"pilot_{name}.png",
                panels=[("val_old", "old validation bpb"), ("val_new", "new validation bpb")],
                title=f"pilot, {name}: AdamW, full fine-tuning",
            )
        )
    return paths
