"""The verdict table: for every task, PROFIT's best configuration against the best baseline.

One row per task × model (and budget view), read from the committed results files of the
suites (:data:`SUITES`, all in the one schema of :mod:`experiments.common.suite`):

* the best baseline: the non-PROFIT method with the best validation score;
* PROFIT's best configuration: the PROFIT row with the best validation score (where the
  task is non-proximal, a new head, plain PROFIT and PROFIT with warm-up are separate
  rows, as the paper prescribes the warm-up for that case); at equal main steps, the
  best of those with a ``@main`` row;
* the paired difference PROFIT − baseline over the reporting seeds on the old metric,
  the new metric and their mean, each with its 95% Student-t interval, signed so that
  positive is better for PROFIT;
* a word from the mean's interval: *better* or *worse* when it excludes 0, else *no
  different*;
* whether the best baseline had plateaued within the budget (the suite's plateau check,
  where it has one); a row where it had not is marked, since a longer budget may change it.

Rendered into docs/results.md by ``python -m experiments.report`` (block ``verdict``; with it
``verdict_diagnostics``, PROFIT's diagnostics per task, and ``verdict_figures``, an index of
every task's trade-off and training-curve figures), and in one line per task family into the
README (block ``verdict_summary``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experiments.common import protocol, results, tables

#: Every committed suite: (results folder under experiments/results, report module, task,
#: model). Each folder holds the suite's ``results.json``, ``results.md`` and figures; a
#: suite whose folder has no ``results.json`` yet (a run in progress) has no rows.
SUITES = (
    ("paper_toy", "experiments.paper_toy.report", "paper toy", "2-500-500-1 MLP"),
    ("recipe_mlp", "experiments.recipe.report", "class split 0-4 → 5-9", "MLP"),
    ("recipe_vit", "experiments.recipe.report", "class split 0-4 → 5-9", "ViT-mini"),
    ("resnet_class_split", "experiments.recipe.report", "class split 0-4 → 5-9", "ResNet-mini"),
    ("recipe_shift_rotate", "experiments.recipe.report", "covariate shift: rotation", "MLP"),
    (
        "recipe_vit_shift_rotate",
        "experiments.recipe.report",
        "covariate shift: rotation",
        "ViT-mini",
    ),
    (
        "resnet_shift_rotate",
        "experiments.recipe.report",
        "covariate shift: rotation",
        "ResNet-mini",
    ),
    ("recipe_shift_noise", "experiments.recipe.report", "covariate shift: noise", "MLP"),
    ("recipe_vit_shift_noise", "experiments.recipe.report", "covariate shift: noise", "ViT-mini"),
    ("resnet_shift_noise", "experiments.recipe.report", "covariate shift: noise", "ResNet-mini"),
    ("recipe_maintenance", "experiments.recipe.report", "maintenance (same distribution)", "MLP"),
    (
        "recipe_vit_maintenance",
        "experiments.recipe.report",
        "maintenance (same distribution)",
        "ViT-mini",
    ),
    # The language-model suites (issue 30): a byte-level transformer, full and LoRA r=8.
    *(
        (f"lm_{task}_{mode}", "experiments.lm.report", name, f"byte LM, {model}")
        for task, name in (
            ("style", "LM style shift: WEB → KJV"),
            ("maintenance", "LM maintenance: WEB, later books"),
            ("domain", "LM domain shift: WEB → Python docs"),
        )
        for mode, model in (("full", "full"), ("lora", "LoRA r=8"))
    ),
)
#: Task kinds where PROFIT with warm-up is its own verdict row (the paper's non-proximal case:
#: new classes; a new domain for the language model).
SEPARATE_WARMUP = ("class_split", "domain_shift")
#: Where ``experiments/results`` lies relative to the repository root, for the links (the
#: report writes them relative to the file that holds the table).
README_RESULTS = "experiments/results"
#: The figures of every suite (file, label), for the README's figure index.
TRADEOFF = (("tradeoff.png", "trade-off"),)
ALONG = (("curves.png", "curves"), ("diagnostics.png", "PROFIT's diagnostics"))


def _paired(a: Sequence[Mapping[str, Any]], b: Sequence[Mapping[str, Any]], sign: float):
    """Signed paired differences of the test ``{"old", "new"}`` of two rows' runs."""
    return {
        key: results.paired_difference(
            [sign * protocol.metric(r["test"], key) for r in a],
            [sign * protocol.metric(r["test"], key) for r in b],
        )
        for key in protocol.METRICS
    }


def suite_rows(res: Mapping[str, Any], task: str, model: str) -> list[dict]:
    """The verdict rows of one suite's results (none without tuning: a demo)."""
    sel = res["selection"]
    if not sel:
        return []
    rows, base, metric = res["rows"], res["best_baseline"], res["metric"]
    sign = -1.0 if metric["lower_is_better"] else 1.0
    plateau = res.get("plateau")
    scores = {k: v["score"] for k, v in sel.items()}
    profit = [k for k in sel if protocol.is_profit(rows[k]["method"])]
    groups = [(task, profit)]
    if res["config"].get("task", {}).get("kind") in SEPARATE_WARMUP:
        groups = [
            (task, [k for k in profit if k != "profit_warmup"]),
            (f"{task} with warm-up", [k for k in profit if k == "profit_warmup"]),
        ]
    out = []
    for name, labels in groups:
        twins = [k for k in labels if f"{k}@main" in rows]
        for title, candidates, suffix in (
            (name, labels, ""),
            (f"{name} (equal main steps)", twins, "@main"),
        ):
            if not candidates:
                continue
            best = min(candidates, key=scores.__getitem__)
            diff = _paired(rows[best + suffix]["runs"], rows[base]["runs"], sign)
            out.append(
                {
                    "task": title,
                    "model": model,
                    "baseline": base,
                    "profit": best + suffix,
                    "profit_hparams": protocol.hparams_text(sel[best]["hparams"]),
                    "diff": diff,
                    "scale": metric["scale"],
                    "unit": metric["diff_unit"],
                    "word": protocol.word(diff["mean"], lower_is_better=False),
                    "plateaued": plateau is None or bool(plateau["plateaued"]),
                }
            )
    return out


def _results(root: Path) -> list[tuple[str, str, str, str, dict[str, Any]]]:
    """``(folder, report module, task, model, results)`` of every suite with a results file."""
    out = []
    for folder, module, task, model in SUITES:
        path = root / folder / "results.json"
        if path.exists():
            out.append((folder, module, task, model, json.loads(path.read_text())))
    return out


def figures_table(root: Path) -> str:
    """One line per task and model with a results file under ``root``: links to its
    old-vs-new trade-off figure (every method, mean ± standard error, each seed a dot) and
    to its figures along fine-tuning, each link to a file that exists."""
    lines = [
        "| task | model | old vs new (every method, seeds' spread) | along fine-tuning |",
        "|---|---|---|---|",
    ]
    for folder, _, task, model, _ in _results(root):
        cells = [
            ", ".join(
                f"[{label}]({README_RESULTS}/{folder}/{file})"
                for file, label in figs
                if (root / folder / file).exists()
            )
            or "none"
            for figs in (TRADEOFF, ALONG)
        ]
        lines.append(f"| {task} | {model} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def rows(root: Path) -> list[dict]:
    return [r for _, _, task, model, res in _results(root) for r in suite_rows(res, task, model)]


def plateau_mark(row: dict[str, Any]) -> str:
    """`` †`` after a row whose best baseline had not plateaued, else nothing."""
    return "" if row["plateaued"] else " †"


def table(root: Path) -> str:
    header = [
        "task",
        "model",
        "best baseline",
        "PROFIT's best",
        "Δ old",
        "Δ new",
        "Δ mean",
        "verdict",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    found = rows(root)
    for r in found:
        s = r["scale"]
        d = r["diff"]
        cells = [
            f"{s * d[k]['mean']:+.3g} [{s * d[k]['lo']:+.3g}, {s * d[k]['hi']:+.3g}]"
            if d[k]["n"] > 1
            else f"{s * d[k]['mean']:+.3g}"
            for k in protocol.METRICS
        ]
        profit = f"`{r['profit']}`" + (f" ({r['profit_hparams']})" if r["profit_hparams"] else "")
        base = f"`{r['baseline']}`" + plateau_mark(r)
        cells = [r["task"], r["model"], base, profit, *cells, f"**{r['word']}**"]
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        "PROFIT − best baseline, paired over the reporting seeds, mean [95% t-interval], signed so "
        f"that **positive favours PROFIT** ({units_note(found)}). Verdict from the interval of "
        "Δ mean: better / worse when it excludes 0."
    )
    if not all(r["plateaued"] for r in found):
        note += (
            " † The best baseline had not plateaued within the budget by the suite's plateau "
            "check (stated under that suite's table in Results): a longer budget may change "
            "that row."
        )
    return "\n".join(lines) + "\n\n" + note


#: How a difference in each metric's unit reads, signed so that positive favours PROFIT.
UNIT_NOTES = {
    "pts": "accuracy points for the image tasks",
    "MSE": "minus the MSE for the toys",
    "bpb": "minus the bits per byte for the language models",
}


def units_note(found: Sequence[Mapping[str, Any]]) -> str:
    """What the signed differences of ``found`` rows are, one phrase per unit among them (in
    :data:`UNIT_NOTES`' order; a unit it lacks is an error, not a silent omission)."""
    units = {r["unit"] for r in found}
    if missing := units - set(UNIT_NOTES):
        raise KeyError(f"verdict.UNIT_NOTES has no phrase for the unit(s) {sorted(missing)}")
    return ", ".join(text for unit, text in UNIT_NOTES.items() if unit in units)


#: What a verdict row's task adds to its family's name: a budget view or the warm-up.
VARIANTS = (" (equal gradients)", " (equal main steps)", " with warm-up")

_WORDS = ("better", "no different", "worse")


def family(task: str) -> str:
    """The task family of a verdict row: its task without the variant (``"class split 0-4 →
    5-9 with warm-up (equal main steps)"`` is ``"class split 0-4 → 5-9"``)."""
    for variant in VARIANTS:
        task = task.replace(variant, "")
    return task


def summary_table(root: Path) -> str:
    """The verdict in one line per task family (every model, budget and warm-up variant of a
    task): how many of PROFIT's best rows were better, no different or worse than the best
    baseline, the range of their Δ mean, and links to each model's full results."""
    families: dict[str, dict[str, Any]] = {}
    for folder, _, task, model, res in _results(root):
        link = f"{folder}/results.md" if (root / folder / "results.md").exists() else folder
        for r in suite_rows(res, task, model):
            fam = families.setdefault(family(r["task"]), {"models": {}, "rows": []})
            fam["models"].setdefault(r["model"], f"{README_RESULTS}/{link}")
            fam["rows"].append(r)
    lines = [
        "| task | model | rows | PROFIT's best vs the best baseline | Δ mean (range) | results |",
        "|---|---|---|---|---|---|",
    ]
    for name, fam in families.items():
        found = fam["rows"]
        counts = []
        for word in _WORDS:
            same = [r for r in found if r["word"] == word]
            open_ = sum(not r["plateaued"] for r in same)
            if same:
                counts.append(f"{len(same)} {word}" + (f" ({open_} †)" if open_ else ""))
        words = ", ".join(counts)
        means = sorted(r["scale"] * r["diff"]["mean"]["mean"] for r in found)
        spread = f"{means[0]:+.3g}" + (f" to {means[-1]:+.3g}" if len(means) > 1 else "")
        units = " / ".join(sorted({r["unit"] for r in found}))
        # "; " between models: a model's name may hold a comma ("byte LM, LoRA r=8").
        models = "; ".join(fam["models"])
        links = "; ".join(f"[{model}]({target})" for model, target in fam["models"].items())
        lines.append(f"| {name} | {models} | {len(found)} | {words} | {spread} {units} | {links} |")
    note = (
        "One line per task family: its verdict rows (models, equal gradients or equal main "
        "steps, with or without the warm-up) counted by verdict. Δ mean: PROFIT − best "
        "baseline on the mean of the old and new metric, paired over the reporting seeds, the "
        "range over the family's rows; positive favours PROFIT ("
        + units_note([r for fam in families.values() for r in fam["rows"]])
        + ")."
    )
    if not all(r["plateaued"] for fam in families.values() for r in fam["rows"]):
        note += (
            " † Rows whose best baseline had not plateaued within the budget: a longer budget "
            "may change them."
        )
    return "\n".join(lines) + "\n\n" + note


DIAGNOSTICS = tables.DIAGNOSTICS


def diagnostic_rows(root: Path) -> dict[str, dict[str, Any]]:
    """The best PROFIT row of every task that logged diagnostics, by
    ``"task (model): verdict"`` (rows at equal main steps left out), the verdict marked with
    † where the best baseline had not plateaued, as in :func:`table`."""
    out: dict[str, Any] = {}
    for _, _, task, model, res in _results(root):
        for r in suite_rows(res, task, model):
            row = res["rows"][r["profit"]]
            if r["profit"].endswith("@main"):
                continue
            if DIAGNOSTICS[0][0] in row["runs"][0]["curve"][-1]:
                out[f"{r['task']} ({r['model']}): {r['word']}{plateau_mark(r)}"] = row
    return out


def diagnostics_table(root: Path, tail: float = 0.5) -> str:
    """Each diagnostic over the last ``tail`` of training, mean over the logged points and the
    reporting seeds, with the standard error over seeds, one line per task."""
    header = ["task (model): verdict", *(label for _, label in DIAGNOSTICS)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    found = diagnostic_rows(root)
    for label, row in found.items():
        cells = [label]
        for key, _ in DIAGNOSTICS:
            per_seed = []
            for run in row["runs"]:
                points = [(p["step"], p[key]) for p in run["curve"] if key in p]
                last = points[-1][0]
                per_seed.append(np.mean([v for st, v in points if st > (1 - tail) * last]))
            mean, se = results.mean_se(per_seed)
            cells.append(f"{mean:.3f} ± {se:.3f}")
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        f"PROFIT's best row per task, each diagnostic averaged over the last {tail:.0%} of "
        "fine-tuning (each logged point averages, over the update calls since the one before, "
        f"the diagnostics of the latest main step), {results.SPREAD}. Conflict rate: share of "
        "main steps where the projection fired (⟨g, Δ⟩ < 0); removed fraction: ‖removed "
        "component‖ / ‖g‖."
    )
    if any(label.endswith("†") for label in found):
        note += " † As in the verdict table: the best baseline had not plateaued."
    return "\n".join(lines) + "\n\n" + note


def plot_diagnostics(root: Path, path: Path) -> Path | None:
    """PROFIT's diagnostics along fine-tuning, one line per task that logged them (the best
    PROFIT row of each task, mean over seeds), labelled with the task's verdict word."""
    from experiments.common import plotting

    curves = diagnostic_rows(root)
    if not curves:
        return None
    return plotting.plot_row_curves(
        curves,
        path,
        panels=list(DIAGNOSTICS),
        title="PROFIT's best row per task: diagnostics along fine-tuning (mean over seeds)",
    )
