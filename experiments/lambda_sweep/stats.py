"""Statistics of a λ_ref sweep: per-point summaries over seeds, the choices, and the bar.

A task supplies ``run_fn(point, seed) -> record`` (:mod:`experiments.lambda_sweep.runs`)
returning old/new metrics on a validation and a test split. Choices (the best fixed λ_ref, a
recommended ``ref_scale``) are made on **validation** numbers; **test** numbers are reported.

The bar (issue 10): the automatic rule at its default ``ref_scale`` is *within seed noise* of the
best fixed λ_ref on the mean of the old and new metrics. "Within seed noise" is made precise as
``gap ≤ std_best``: the automatic rule's test mean is worse than the best fixed λ_ref's by at
most the best fixed λ_ref's own seed-to-seed standard deviation (sample std over seeds), or it is
better. (Not the larger of the two stds: a rule that blows up on one seed has a huge std and
would pass trivially.) The paired per-seed difference is reported as well. This noise is the
bar's criterion; the spreads the tables and plots show are standard errors
(:data:`experiments.common.results.SPREAD`), fields ``*_se``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from experiments.common import results
from experiments.lambda_sweep.grid import default_ref_scale

FIELDS = ("old", "new", "mean")
#: Optional per-run numbers averaged over seeds when present: the SGD λ_ref equivalent to the
#: displacement (‖Δ‖/‖g‖), the fraction of main calls whose gradient was projected, the fraction
#: of ‖g‖ removed by the projection, seconds per run.
EXTRA_KEYS = ("lambda_equiv", "conflict_rate", "removed_frac", "time_s")


@dataclasses.dataclass(frozen=True)
class Metric:
    """How a task measures old/new performance."""

    name: str  # e.g. "MSE" or "accuracy (%)"
    lower_is_better: bool

    def best(self, values: Sequence[float]) -> int:
        vals = [
            v if np.isfinite(v) else (math.inf if self.lower_is_better else -math.inf)
            for v in values
        ]
        return int(np.argmin(vals) if self.lower_is_better else np.argmax(vals))


def reference_stats(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean ± standard error over seeds of ``old_test``/``new_test`` rows (adds ``mean_test``)."""
    out = {}
    for f in FIELDS:
        vals = [
            (r["old_test"] + r["new_test"]) / 2 if f == "mean" else r[f"{f}_test"] for r in rows
        ]
        out[f"{f}_test_mean"], out[f"{f}_test_se"] = results.mean_se(vals)
    return out


def summarize(
    records: Sequence[Mapping[str, Any]],
    metric: Metric,
    learning_rates: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Per method: mean ± standard error per point, the best fixed λ_ref (chosen on validation),
    the bar.

    Returns ``{method: {"points": [...], "best_fixed": ..., "best_fixed_test_oracle": ...,
    "auto_default": ..., "best_ref_scale": ..., "bar": {...}, "bar_vs_test_oracle": {...}}}``;
    with ``learning_rates`` (λ_main per method) also ``best_fixed_paper_range`` and
    ``bar_vs_paper_range``: the best fixed λ_ref (on validation) within the paper's range
    λ_main/10 … λ_main/10⁴.
    """
    out: dict[str, Any] = {}
    default = default_ref_scale()
    for method in dict.fromkeys(r["method"] for r in records):
        by_point: dict[tuple[str, float], list[Mapping[str, Any]]] = {}
        for r in records:
            if r["method"] == method:
                by_point.setdefault((r["kind"], float(r["value"])), []).append(r)
        rows = []
        for (kind, value), rs in by_point.items():
            rs = sorted(rs, key=lambda r: r["seed"])
            row: dict[str, Any] = {"kind": kind, "value": value, "seeds": [r["seed"] for r in rs]}
            for f in FIELDS:
                for split in ("val", "test"):
                    vals = [r[f"{f}_{split}"] for r in rs]
                    row[f"{f}_{split}"] = vals
                    row[f"{f}_{split}_mean"], row[f"{f}_{split}_se"] = results.mean_se(vals)
            for key in EXTRA_KEYS:
                vals = [r[key] for r in rs if r.get(key) is not None]
                if vals:
                    row[f"{key}_mean"], row[f"{key}_se"] = results.mean_se(vals)
            rows.append(row)
        fixed = sorted((r for r in rows if r["kind"] == "fixed"), key=lambda r: r["value"])
        auto = sorted((r for r in rows if r["kind"] == "auto"), key=lambda r: r["value"])
        res: dict[str, Any] = {"points": fixed + auto}
        if fixed:
            res["best_fixed"] = fixed[metric.best([r["mean_val_mean"] for r in fixed])]
            res["best_fixed_test_oracle"] = fixed[metric.best([r["mean_test_mean"] for r in fixed])]
            lr = (learning_rates or {}).get(method)
            res["learning_rate"] = lr
            paper = [r for r in fixed if lr and lr / 1e4 * 0.999 <= r["value"] <= lr / 10 * 1.001]
            if paper:
                res["best_fixed_paper_range"] = paper[
                    metric.best([r["mean_val_mean"] for r in paper])
                ]
        if auto:
            res["best_ref_scale"] = auto[metric.best([r["mean_val_mean"] for r in auto])]
            dflt = [r for r in auto if math.isclose(r["value"], default)]
            res["auto_default"] = dflt[0] if dflt else None
        if fixed and res.get("auto_default"):
            res["bar"] = bar(res["auto_default"], res["best_fixed"], metric)
            res["bar_vs_test_oracle"] = bar(
                res["auto_default"], res["best_fixed_test_oracle"], metric
            )
            if "best_fixed_paper_range" in res:
                res["bar_vs_paper_range"] = bar(
                    res["auto_default"], res["best_fixed_paper_range"], metric
                )
        out[method] = res
    return out


def bar(auto: Mapping[str, Any], best: Mapping[str, Any], metric: Metric) -> dict[str, Any]:
    """Is the automatic rule within seed noise of ``best`` on the mean metric (test)?

    Noise = the best fixed λ_ref's sample std over seeds (see the module docstring)."""
    ma, sa = auto["mean_test_mean"], auto["mean_test_se"]
    mb, sb = best["mean_test_mean"], best["mean_test_se"]
    # positive gap = the automatic rule is worse
    gap = (ma - mb) if metric.lower_is_better else (mb - ma)
    noise = results.mean_std(best["mean_test"])[1]  # sample std over seeds
    common = sorted(set(auto["seeds"]) & set(best["seeds"]))
    a = dict(zip(auto["seeds"], auto["mean_test"], strict=True))
    b = dict(zip(best["seeds"], best["mean_test"], strict=True))
    sign = 1.0 if metric.lower_is_better else -1.0
    paired = [sign * (a[s] - b[s]) for s in common]
    pm, ps = results.mean_se(paired) if paired else (math.nan, math.nan)
    return {
        "auto_mean": ma,
        "auto_se": sa,
        "best_mean": mb,
        "best_se": sb,
        "best_value": best["value"],
        "gap": gap,
        "noise": noise,
        "paired_gap_mean": pm,
        "paired_gap_se": ps,
        "holds": bool(gap <= noise),
    }
