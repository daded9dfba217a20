"""Tables and figures of any suite's ``results.json`` (:mod:`experiments.common.suite`).

The tables every suite has, formatted by the metric the results file records
(``res["metric"]``: accuracy in %, MSE, ...): every method at its tuned point
(:func:`tuned_table`) and every compared row against the best baseline
(:func:`comparison_table`); the page (:func:`markdown`) and the figures (:func:`plot`).
A suite's report module adds its own tables (beside its paper, ablations); a suite without
tables of its own uses this module as its report module (:func:`blocks`, :func:`page`,
:func:`plot`: the interface :mod:`experiments.report` calls).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.common import protocol, results


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])


def _missing(x: Any) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def pm(mean: float | None, se: float | None, *, scale: float = 1.0, digits: int = 3) -> str:
    """``mean ± se`` (``–`` for a missing mean, the mean alone without a spread)."""
    if _missing(mean):
        return "–"
    if _missing(se):
        return f"{scale * mean:.{digits}f}"
    return f"{scale * mean:.{digits}f} ± {scale * se:.{digits}f}"


def value(res: Mapping[str, Any], mean: float | None, se: float | None = None) -> str:
    """A value of the suite's metric as its tables show it."""
    m = res["metric"]
    return pm(mean, se, scale=m["scale"], digits=m["digits"])


def cells(res: Mapping[str, Any], summary: Mapping[str, Any], keys=("old", "new", "mean")):
    """Test ``mean ± se`` of a row's summary, one cell per key."""
    return [value(res, summary[f"test_{k}_mean"], summary[f"test_{k}_se"]) for k in keys]


def interval(res: Mapping[str, Any], d: Mapping[str, Any]) -> str:
    """A paired difference as ``mean [lo, hi]`` in the metric's display unit (the mean alone
    when there is no interval: one seed)."""
    m = res["metric"]
    s, n = m["scale"], m["digits"]
    if _missing(d["lo"]) or _missing(d["hi"]):  # one seed: no interval
        return f"{s * d['mean']:+.{n}f}"
    return f"{s * d['mean']:+.{n}f} [{s * d['lo']:+.{n}f}, {s * d['hi']:+.{n}f}]"


def word(res: Mapping[str, Any], d: Mapping[str, float]) -> str:
    return protocol.word(d, lower_is_better=res["metric"]["lower_is_better"])


def tuned_table(res: Mapping[str, Any]) -> str:
    """Every method at its point selected on validation (equal gradient evaluations)."""
    m = res["metric"]
    u = m["unit"]
    header = ["method", "selected (validation)", f"old ({u})", f"new ({u})", f"mean ({u})"]
    header.append(f"val score ({u})")
    sign = 1.0 if m["lower_is_better"] else -1.0
    rows = []
    for label, sel in res["selection"].items():
        edge = " (grid edge)" if sel["at_edge"] else ""
        best = " **best baseline**" if label == res["best_baseline"] else ""
        rows.append(
            [
                f"`{label}`{best}",
                protocol.hparams_text(sel["hparams"]) + edge,
                *cells(res, res["rows"][label]["summary"]),
                f"{sign * m['scale'] * sel['score']:.{m['digits']}f}",
            ]
        )
    n = len(res["config"]["seeds"])
    calls = res["config"]["finetune"]["budget"]
    return table(header, rows) + (
        f"\n\nTest {m['name']}, {res['spread']} (n = {n}); {calls} update calls (gradient "
        f"evaluations) each. val score: mean of old and new validation {m['name']} over the "
        "tuning seeds (the selection criterion)."
    )


def comparison_table(res: Mapping[str, Any]) -> str:
    """Every compared row minus the best baseline, paired over the reporting seeds; rows
    ending ``@main`` are the equal-main-steps view. With the plateau check's sentence."""
    m = res["metric"]
    d = m["diff_unit"]
    header = ["PROFIT row", "best baseline", f"Δ old ({d})", f"Δ new ({d})", f"Δ mean ({d})"]
    header.append("verdict")
    rows = [
        [
            f"`{label}`",
            f"`{res['best_baseline']}`",
            *(interval(res, diff[k]) for k in ("old", "new", "mean")),
            word(res, diff["mean"]),
        ]
        for label, diff in res["comparisons"].items()
    ]
    return table(header, rows) + (
        "\n\nPROFIT minus the best baseline (best validation score), paired over the reporting "
        f"seeds, test {m['diff_text']}, mean [95% t-interval]."
        + _plateau_sentence(res)
        + _start_sentence(res)
    )


def _plateau_sentence(res: Mapping[str, Any]) -> str:
    p = res.get("plateau")
    if p is None:
        return ""
    m = res["metric"]
    units = "points" if m["unit"] == "%" else m["unit"]
    verb = "fell" if m["lower_is_better"] else "rose"
    return (
        f" Plateau check: the best baseline's new-task validation {m['name']} {verb} "
        f"{m['scale'] * p['gain']:+.{m['digits']}f} {units} over the last 30% of its run (from "
        f"call {p['from_step']}): " + ("plateaued." if p["plateaued"] else "**not plateaued**.")
    )


def _start_sentence(res: Mapping[str, Any]) -> str:
    """The pretrained model's test metric on both tasks where the suite records it (tasks
    whose head reads both), as a sentence."""
    start = res["pretrained"].get("start")
    if start is None:
        return ""
    m, t = res["metric"], start["test"]
    sep = "" if m["unit"] == "%" else " "
    old, new = (f"{m['scale'] * t[k]:.{m['digits']}f}{sep}{m['unit']}" for k in ("old", "new"))
    return f" Before fine-tuning, the pretrained model's test {m['name']}: old {old}, new {new}."


def markdown(
    res: Mapping[str, Any],
    tables: Mapping[str, str],
    titles: Mapping[str, str],
    preamble: Sequence[str] = (),
) -> str:
    """The suite's ``results.md``: title, ``preamble`` lines, each table under its title
    (``titles``: the table's name without the suite's prefix), the provenance."""
    parts = [f"# {res['name']}", "", *preamble]
    for name, body in tables.items():
        parts += [f"## {titles[name]}", "", body, ""]
    parts.append(results.provenance(res))
    return "\n".join(parts) + "\n"


def blocks(res: Mapping[str, Any], prefix: str) -> dict[str, str]:
    """The tables every suite has, named ``<prefix>_tuned`` and ``<prefix>_vs_best``."""
    if not res["selection"]:  # no tuning (a demo): nothing to compare
        return {}
    return {f"{prefix}_tuned": tuned_table(res), f"{prefix}_vs_best": comparison_table(res)}


#: The titles of :func:`blocks`' tables on a suite's page (by name without the prefix).
TITLES = {
    "tuned": "Every method at its own learning rate",
    "vs_best": "PROFIT against the best baseline",
}


def page(res: Mapping[str, Any], prefix: str) -> str:
    """``results.md`` of a suite without tables of its own."""
    titles = {f"{prefix}_{k}": v for k, v in TITLES.items()}
    return markdown(res, blocks(res, prefix), titles)


#: PROFIT's diagnostics as logged along training (curve key, label in tables and figures).
DIAGNOSTICS = (
    ("train_conflict", "conflict rate"),
    ("train_cos_g_delta", "cos(g, Δ)"),
    ("train_removed_frac", "removed fraction of ‖g‖"),
)


def plot(
    res: Mapping[str, Any], out_dir: Path, *, log: bool = False, reference_x: float | None = None
) -> list[Path]:
    """``tradeoff.png`` (old vs new test metric of every row but the ablations, each seed a
    dot), ``curves.png`` (validation metric along fine-tuning, mean over seeds) and, where
    PROFIT logged them, ``diagnostics.png``; ``log``: logarithmic axes (errors)."""
    from experiments.common import plotting

    m = res["metric"]
    u = f" ({m['unit']})" if m["unit"] != m["name"] else ""
    rows = {k: v for k, v in res["rows"].items() if not k.startswith("ablation:")}
    paths = [
        plotting.plot_seed_tradeoff(
            rows,
            out_dir / "tradeoff.png",
            xlabel=f"old-task test {m['name']}{u}" + (" (log)" if log else ""),
            ylabel=f"new-task test {m['name']}{u}",
            title=res["name"],
            scale=m["scale"],
            reference_x=reference_x,
            xlog=log,
        ),
        plotting.plot_row_curves(
            rows,
            out_dir / "curves.png",
            panels=[(f"val_{k}", f"{k}-task validation {m['name']}{u}") for k in ("old", "new")],
            title=f"{res['name']}: validation {m['name']} along fine-tuning (mean over seeds)",
            scale=m["scale"],
            ylog=log,
        ),
    ]
    profit = {k: v for k, v in rows.items() if DIAGNOSTICS[0][0] in v["runs"][0]["curve"][-1]}
    if profit:
        paths.append(
            plotting.plot_row_curves(
                profit,
                out_dir / "diagnostics.png",
                panels=list(DIAGNOSTICS),
                title=f"{res['name']}: PROFIT's diagnostics (mean over calls and seeds)",
            )
        )
    return paths
