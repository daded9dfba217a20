"""The outputs of a λ_ref sweep: ``<task>_sweep.{json,csv,md,png}``, and their rewrite.

``python -m experiments.lambda_sweep.report FILE...`` recomputes the summary, tables and plot of
finished sweeps from their ``*_sweep.json`` (the records) with the current code.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.common import results
from experiments.lambda_sweep import runs
from experiments.lambda_sweep.grid import default_ref_scale
from experiments.lambda_sweep.plot import plot
from experiments.lambda_sweep.stats import EXTRA_KEYS, FIELDS, Metric, summarize


def _fmt(m: float, s: float, digits: int) -> str:
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def format_tables(summary: Mapping[str, Any], metric: Metric, digits: int) -> str:
    """Markdown: one table per method (every point) and the bar table."""
    better = "lower" if metric.lower_is_better else "higher"
    lines = []
    for method, res in summary.items():
        lines += [
            f"### {method}",
            "",
            f"Test {metric.name} ({better} is better), {results.SPREAD}; the "
            "'mean' column is (old + new) / 2. `val mean` is the validation number used for "
            "the choice (★ = best fixed λ_ref on validation, ☆ = best ref_scale on validation).",
            "",
            "| reference | old | new | mean | val mean | λ_equiv ≈ ‖Δ‖/‖g‖ | projected | "
            "‖removed‖/‖g‖ | s / run |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for r in res["points"]:
            star = ""
            if r is res.get("best_fixed"):
                star = " ★"
            if r is res.get("best_ref_scale"):
                star = " ☆"
            what = (
                f"SGD λ_ref = {r['value']:.3g}"
                if r["kind"] == "fixed"
                else (f"auto, ref_scale = {r['value']:g}")
            )
            eq = f"{r['lambda_equiv_mean']:.2g}" if "lambda_equiv_mean" in r else "-"
            pr = f"{r['conflict_rate_mean']:.2f}" if "conflict_rate_mean" in r else "-"
            rm = f"{r['removed_frac_mean']:.2g}" if "removed_frac_mean" in r else "-"
            t = f"{r['time_s_mean']:.1f}" if "time_s_mean" in r else "-"
            lines.append(
                f"| {what}{star} | {_fmt(r['old_test_mean'], r['old_test_se'], digits)} | "
                f"{_fmt(r['new_test_mean'], r['new_test_se'], digits)} | "
                f"{_fmt(r['mean_test_mean'], r['mean_test_se'], digits)} | "
                f"{r['mean_val_mean']:.{digits}f} | {eq} | {pr} | {rm} | {t} |"
            )
        lines.append("")
    lines += [
        "### The bar: automatic rule (default ref_scale) vs the best fixed λ_ref",
        "",
        f"Test mean-of-old-and-new {metric.name} ({better} is better). Best fixed λ_ref chosen "
        "on validation; gap > 0 means the automatic rule is worse; noise = the best fixed λ_ref's "
        "sample standard deviation over seeds (the bar's criterion); within noise = gap ≤ noise; "
        "paired gap = per-seed difference; means ± standard error over seeds.",
        "",
        "| method | compared with | λ_ref | its mean | auto (default) mean | gap | noise | "
        "paired gap | within noise? |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    which = {
        "bar": "best fixed λ_ref of the grid (val)",
        "bar_vs_paper_range": "best in λ_main/10…/10⁴ (val)",
        "bar_vs_test_oracle": "best fixed λ_ref on test (oracle)",
    }
    for method, res in summary.items():
        for key, what in which.items():
            b = res.get(key)
            if not b:
                continue
            lines.append(
                f"| {method} | {what} | {b['best_value']:.3g} | "
                f"{_fmt(b['best_mean'], b['best_se'], digits)} | "
                f"{_fmt(b['auto_mean'], b['auto_se'], digits)} | {b['gap']:+.{digits}f} | "
                f"{b['noise']:.{digits}f} | "
                f"{_fmt(b['paired_gap_mean'], b['paired_gap_se'], digits)} | "
                f"{'**yes**' if b['holds'] else '**no**'} |"
            )
    return "\n".join(lines) + "\n"


def write_outputs(
    out_dir: Path,
    *,
    task: str,
    title: str,
    metric: Metric,
    records: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    meta: Mapping[str, Any],
    reference: Mapping[str, float] | None = None,
    digits: int = 4,
) -> dict[str, Path]:
    """Writes ``<task>_sweep.json``, ``<task>_sweep.csv``, ``<task>_sweep.md`` and
    ``<task>_sweep.png``; returns their paths. ``reference``: the pretrained model's test
    numbers (``old_test_mean``, ``old_test_se``, ... for old/new/mean), drawn in grey."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {ext: out_dir / f"{task}_sweep.{ext}" for ext in ("json", "csv", "md", "png")}
    payload = {
        "task": task,
        "title": title,
        "metric": dataclasses.asdict(metric),
        "default_ref_scale": default_ref_scale(),
        **meta,
        "no_fine_tuning": reference,
        "summary": summary,
        "records": list(records),
    }
    results.write_json(paths["json"], payload)
    cols = ["method", "kind", "value", "seed", "old_val", "new_val", "mean_val"]
    cols += ["old_test", "new_test", "mean_test", *EXTRA_KEYS]
    with open(paths["csv"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in records:
            w.writerow([_csv(r.get(c)) for c in cols])
    md = [f"# λ_ref sensitivity sweep: {title}", ""]
    if "environment" in meta:  # results.environment(command): the command, then the rest
        md.append(f"- command: {meta['environment']['command']}")
    md += [f"- {k}: {v}" for k, v in meta.items() if isinstance(v, str | int | float | list)]
    if reference:
        md.append(
            "- no fine-tuning (pretrained model, test): "
            + ", ".join(
                f"{f} {_fmt(reference[f'{f}_test_mean'], reference[f'{f}_test_se'], digits)}"
                for f in FIELDS
            )
        )
    md += ["", format_tables(summary, metric, digits)]
    results.write_text_atomic(paths["md"], "\n".join(md))
    plot(paths["png"], summary, metric, title=title, reference=reference)
    return paths


def _csv(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _reference_se(reference: Mapping[str, float] | None, n: int) -> dict[str, float] | None:
    """The no-fine-tuning numbers with standard errors. Files written before the sweeps
    reported standard errors hold the sample std over the ``n`` seeds the reference was
    evaluated on (one evaluation, std 0, for the transfer tasks): se = std / sqrt(n)."""
    if reference is None:
        return None
    out = dict(reference)
    for f in FIELDS:
        std = out.pop(f"{f}_test_std", None)
        if std is not None:
            out[f"{f}_test_se"] = std / math.sqrt(n)
    return out


def rewrite(json_path: Path) -> dict[str, Path]:
    """Recomputes the summary, tables and plot of a finished sweep from its ``*_sweep.json``
    (its records), with the current code: ``python -m experiments.lambda_sweep.report FILE...``."""
    payload = json.loads(Path(json_path).read_text())
    metric = Metric(**payload["metric"])
    records = [runs.restore_nan(r) for r in payload["records"]]
    lrs = {n: float(m["learning_rate"]) for n, m in payload["methods"].items()}
    skip = {"task", "title", "metric", "default_ref_scale", "no_fine_tuning", "summary", "records"}
    meta = {k: v for k, v in payload.items() if k not in skip}
    return write_outputs(
        Path(json_path).parent,
        task=payload["task"],
        title=payload["title"],
        metric=metric,
        records=records,
        summary=summarize(records, metric, lrs),
        meta=meta,
        reference=_reference_se(payload.get("no_fine_tuning"), len(payload["seeds"])),
        digits=4 if metric.lower_is_better else 2,
    )


if __name__ == "__main__":
    import sys

    for arg in sys.argv[1:]:
        print(rewrite(Path(arg)))
