"""The verdict table: for every task, PROFIT's best configuration against the best baseline.

One row per task × model, read from the committed results files only:

* the best baseline: the non-PROFIT method with the best validation score;
* PROFIT's best configuration: the PROFIT row with the best validation score (on the
  class split, plain PROFIT and PROFIT with warm-up are separate rows, as the paper
  prescribes the warm-up for that non-proximal case);
* the paired difference PROFIT − baseline over the reporting seeds on the old metric,
  the new metric and their mean, each with its 95% Student-t interval, signed so that
  positive is better for PROFIT;
* a word from the mean's interval: *better* or *worse* when it excludes 0, else *no
  different*;
* for the recipe suites, whether the best baseline had plateaued within the budget (the
  suite's plateau check); a row where it had not is marked, since a longer budget may
  change it.

Rendered into docs/results.md by ``python -m experiments.report`` (block ``verdict``; with it
``verdict_diagnostics``, PROFIT's diagnostics per task, and ``verdict_figures``, an index of
every task's trade-off and training-curve figures), and in one line per task family into the
README (block ``verdict_summary``).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from experiments.common import protocol, results


def _paired(a: Sequence[Mapping[str, float]], b: Sequence[Mapping[str, float]], sign: float):
    """Signed paired differences of ``{"old", "new"}`` records (sign -1 for errors)."""
    return {
        key: results.paired_difference(
            [sign * protocol.metric(r, key) for r in a], [sign * protocol.metric(r, key) for r in b]
        )
        for key in protocol.METRICS
    }


def _row(
    task: str,
    model: str,
    unit: str,
    base: str,
    profit: str,
    diff,
    scale: float,
    hp=None,
    plateaued: bool = True,
) -> dict:
    return {
        "task": task,
        "model": model,
        "unit": unit,
        "baseline": base,
        "profit": profit,
        "profit_hparams": protocol.hparams_text(hp) if hp else "",
        "diff": diff,
        "scale": scale,
        "word": protocol.word(diff["mean"], lower_is_better=False),
        "plateaued": plateaued,
    }


def _best(scores: Mapping[str, float], labels) -> str:
    return min(labels, key=lambda k: scores[k])


def paper_toy_rows(res: Mapping[str, Any]) -> list[dict]:
    out = []
    for conv_name, conv in res["conventions"].items():
        sel = conv.get("selection")
        if not sel:
            continue
        scores = {k: v["score"] for k, v in sel.items()}
        rows = conv["rows"]
        profit = [k for k in sel if rows[k]["method"].startswith("profit")]
        base = conv["best_baseline"]
        best = _best(scores, profit)
        diff = _paired(
            [r["test"] for r in rows[best]["runs"]], [r["test"] for r in rows[base]["runs"]], -1.0
        )
        what = {"grads": "equal gradients", "main": "equal main steps"}[conv_name]
        out.append(
            _row(
                f"paper toy ({what})",
                "2-500-500-1 MLP",
                "MSE",
                base,
                best,
                diff,
                1.0,
                sel[best]["hparams"],
            )
        )
    return out


def toy2d_rows(res: Mapping[str, Any]) -> list[dict]:
    """Our earlier toy (its own protocol: hyper-parameters tuned by its sweep on tuning
    seeds; the baseline and PROFIT row chosen here by the reporting seeds' validation)."""
    per = {k: v for k, v in res["per_seed"].items() if k != "pretrained"}
    score = {k: sum((r["old_val"] + r["new_val"]) / 2 for r in v) / len(v) for k, v in per.items()}
    profit = [k for k in per if k.startswith("profit")]
    base = _best(score, [k for k in per if k not in profit])
    best = _best(score, profit)
    rec = lambda k: [{"old": r["old_test"], "new": r["new_test"]} for r in per[k]]
    return [
        _row(
            "our toy (own design)",
            "MLP 64-64-64",
            "MSE",
            base,
            best,
            _paired(rec(best), rec(base), -1.0),
            1.0,
            res["config"]["methods"][best],
        )
    ]


def recipe_rows(res: Mapping[str, Any], task: str, model: str) -> list[dict]:
    sel, rows, base = res["selection"], res["rows"], res["best_baseline"]
    plateaued = bool(res["plateau"]["plateaued"])
    scores = {k: v["score"] for k, v in sel.items()}
    profit = [k for k in sel if rows[k]["method"].startswith("profit")]
    groups = [(task, profit)]
    if res["config"]["task"]["kind"] == "class_split":
        groups = [
            (task, [k for k in profit if k != "profit_warmup"]),
            (f"{task} with warm-up", [k for k in profit if k == "profit_warmup"]),
        ]
    out = []
    for name, labels in groups:
        if not labels:
            continue
        best = _best(scores, labels)
        base_runs = [r["test"] for r in rows[base]["runs"]]
        out.append(
            _row(
                name,
                model,
                "acc. pts",
                base,
                best,
                _paired([r["test"] for r in rows[best]["runs"]], base_runs, 1.0),
                100.0,
                sel[best]["hparams"],
                plateaued,
            )
        )
        main = rows.get(f"{best}@main")
        if main is not None:
            out.append(
                _row(
                    f"{name} (equal main steps)",
                    model,
                    "acc. pts",
                    base,
                    f"{best}@main",
                    _paired([r["test"] for r in main["runs"]], base_runs, 1.0),
                    100.0,
                    sel[best]["hparams"],
                    plateaued,
                )
            )
    return out


#: The recipe suites behind the verdict: (config mode, task, model). Each writes
#: ``experiments/results/recipe_<mode>/results.json``.
RECIPE_SUITES = (
    ("mlp", "class split 0-4 → 5-9", "MLP"),
    ("vit", "class split 0-4 → 5-9", "ViT-mini"),
    ("shift_rotate", "covariate shift: rotation", "MLP"),
    ("vit_shift_rotate", "covariate shift: rotation", "ViT-mini"),
    ("shift_noise", "covariate shift: noise", "MLP"),
    ("vit_shift_noise", "covariate shift: noise", "ViT-mini"),
    ("maintenance", "maintenance (same distribution)", "MLP"),
    ("vit_maintenance", "maintenance (same distribution)", "ViT-mini"),
)

#: (results file under experiments/results, row builder).
SOURCES = (
    ("paper_toy/results.json", paper_toy_rows),
    ("toy2d/results.json", toy2d_rows),
    *(
        (f"recipe_{mode}/results.json", functools.partial(recipe_rows, task=task, model=model))
        for mode, task, model in RECIPE_SUITES
    ),
)


#: Each source's figures, for the figure index: (results directory, task, model,
#: old-vs-new trade-off figures, figures along fine-tuning), each figure as (file, label).
FIGURES = (
    (
        "paper_toy",
        "paper toy",
        "2-500-500-1 MLP",
        (("tradeoff_grads.png", "equal gradients"), ("tradeoff_main.png", "equal main steps")),
        (("curves_grads.png", "curves"), ("curves_main.png", "curves (equal main steps)")),
    ),
    (
        "toy2d",
        "our toy (own design)",
        "MLP 64-64-64",
        (("tradeoff.png", "trade-off"),),
        (("curves.png", "curves"),),
    ),
    *(
        (
            f"recipe_{mode}",
            task,
            model,
            (("tradeoff.png", "trade-off"),),
            (("curves.png", "curves"), ("diagnostics.png", "PROFIT's diagnostics")),
        )
        for mode, task, model in RECIPE_SUITES
    ),
)

#: Where ``experiments/results`` lies relative to the repository root, for the links (the
#: report writes them relative to the file that holds the table).
README_RESULTS = "experiments/results"


def figures_table(root: Path) -> str:
    """One line per task and model with a results file under ``root``: links to its
    old-vs-new trade-off figure (every method, mean ± standard error, each seed a dot) and
    to its figures along fine-tuning, each link to a file that exists."""
    lines = [
        "| task | model | old vs new (every method, seeds' spread) | along fine-tuning |",
        "|---|---|---|---|",
    ]
    for folder, task, model, tradeoff, along in FIGURES:
        if not (root / folder / "results.json").exists():
            continue
        cells = [
            ", ".join(
                f"[{label}]({README_RESULTS}/{folder}/{file})"
                for file, label in figs
                if (root / folder / file).exists()
            )
            or "none"
            for figs in (tradeoff, along)
        ]
        lines.append(f"| {task} | {model} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines)


def rows(root: Path) -> list[dict]:
    out = []
    for rel, build in SOURCES:
        path = root / rel
        if path.exists():
            out += build(json.loads(path.read_text()))
    return out


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
            for k in protocol.METRICS
        ]
        profit = f"`{r['profit']}`" + (f" ({r['profit_hparams']})" if r["profit_hparams"] else "")
        base = f"`{r['baseline']}`" + plateau_mark(r)
        cells = [r["task"], r["model"], base, profit, *cells, f"**{r['word']}**"]
        lines.append("| " + " | ".join(cells) + " |")
    note = (
        "PROFIT − best baseline, paired over the reporting seeds, mean [95% t-interval], signed so "
        "that **positive favours PROFIT** (accuracy points for the image tasks, minus the MSE for "
        "the toys). Verdict from the interval of Δ mean: better / worse when it excludes 0."
    )
    if not all(r["plateaued"] for r in found):
        note += (
            " † The best baseline had not plateaued within the budget by the suite's plateau "
            "check (stated under that suite's table in Results): a longer budget may change "
            "that row."
        )
    return "\n".join(lines) + "\n\n" + note


#: What a verdict row's task adds to its family's name: a budget convention or the warm-up.
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
    for rel, build in SOURCES:
        path = root / rel
        if not path.exists():
            continue
        folder = Path(rel).parent
        link = folder / "results.md" if (root / folder / "results.md").exists() else folder
        for r in build(json.loads(path.read_text())):
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
        models = ", ".join(fam["models"])
        links = ", ".join(f"[{model}]({target})" for model, target in fam["models"].items())
        lines.append(f"| {name} | {models} | {len(found)} | {words} | {spread} {units} | {links} |")
    note = (
        "One line per task family: its verdict rows (models, equal gradients or equal main "
        "steps, with or without the warm-up) counted by verdict. Δ mean: PROFIT − best "
        "baseline on the mean of the old and new metric, paired over the reporting seeds, the "
        "range over the family's rows; positive favours PROFIT (accuracy points, or minus the "
        "MSE for the toys)."
    )
    if not all(r["plateaued"] for fam in families.values() for r in fam["rows"]):
        note += (
            " † Rows whose best baseline had not plateaued within the budget: a longer budget "
            "may change them."
        )
    return "\n".join(lines) + "\n\n" + note


#: PROFIT's diagnostics as logged along training (curve key, label in tables and figures).
DIAGNOSTICS = (
    ("train_conflict", "conflict rate"),
    ("train_cos_g_delta", "cos(g, Δ)"),
    ("train_removed_frac", "removed fraction of ‖g‖"),
)


def diagnostic_rows(root: Path) -> dict[str, dict[str, Any]]:
    """The best PROFIT row of every recipe task that logged diagnostics, by
    ``"task (model): verdict"`` (rows at equal main steps left out), the verdict marked with
    † where the best baseline had not plateaued, as in :func:`table`."""
    out: dict[str, Any] = {}
    for rel, build in SOURCES:
        file = root / rel
        if not file.exists() or not rel.startswith("recipe_"):
            continue
        res = json.loads(file.read_text())
        for r in build(res):
            row = res["rows"][r["profit"]]
            if (
                r["profit"].endswith("@main")
                or DIAGNOSTICS[0][0] not in row["runs"][0]["curve"][-1]
            ):
                continue
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
