"""Task-independent part of the λ_ref sensitivity sweep: grid, runs, statistics, bar, plots.

A sweep compares, for one PROFIT main optimizer and learning rate λ_main,

* a grid of **fixed** reference learning rates λ_ref (explicit ``optax.sgd(λ_ref)``
  reference, registry hparam ``ref_learning_rate``), and
* the **automatic** reference step (``ref_learning_rate=None``) at several
  ``ref_scale`` values, one of which is the core's default,

from the same pretrained model, with the same seeds (batch order) and the same number of
update calls. A task supplies ``run_fn(point, seed) -> record`` returning old/new metrics on a
validation and a test split. Choices (the best fixed λ_ref, a recommended ``ref_scale``) are made
on **validation** numbers; **test** numbers are reported.

The bar (issue 10): the automatic rule at its default ``ref_scale`` is *within seed noise* of the
best fixed λ_ref on the mean of the old and new metrics. "Within seed noise" is made precise as
``gap ≤ std_best``: the automatic rule's test mean is worse than the best fixed λ_ref's by at
most the best fixed λ_ref's own seed-to-seed standard deviation (sample std over seeds), or it is
better. (Not the larger of the two stds: a rule that blows up on one seed has a huge std and
would pass trivially.) The paired per-seed difference is reported as well.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FIELDS = ("old", "new", "mean")
#: Optional per-run numbers averaged over seeds when present: the SGD λ_ref equivalent to the
#: displacement (‖Δ‖/‖g‖), the fraction of main calls whose gradient was projected, the fraction
#: of ‖g‖ removed by the projection, seconds per run.
EXTRA_KEYS = ("lambda_equiv", "conflict_rate", "removed_frac", "time_s")


def default_ref_scale() -> float:
    """The core's default ``ref_scale`` (``profit_optax.DEFAULT_REF_SCALE``)."""
    import profit_optax

    return float(profit_optax.DEFAULT_REF_SCALE)


def add_x64_argument(parser: Any) -> None:
    """``--x64``: fine-tune in float64 from the float32 pretrained models (cast up)."""
    parser.add_argument(
        "--x64",
        action="store_true",
        help="fine-tune in float64 (the same float32-pretrained models, cast up): where a "
        "fixed λ_ref's Δ rounds away in float32, float64 shows what Algorithm 1 does with it",
    )


def fine_tune_dtype(x64: bool) -> Any:
    """``jnp.float64`` after turning on ``jax_enable_x64`` (process-wide), or ``None``."""
    if not x64:
        return None
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    return jnp.float64


def cast_params(tree: Any, dtype: Any) -> Any:
    """``tree`` with every leaf cast to ``dtype`` (unchanged for ``None``)."""
    if dtype is None:
        return tree
    import jax
    import jax.numpy as jnp

    return jax.tree.map(lambda x: jnp.asarray(x, dtype), tree)


def variant(name: str, *, x64: bool, quick: bool) -> str:
    """Output name of a sweep: ``<name>[_x64][_quick]``."""
    return name + ("_x64" if x64 else "") + ("_quick" if quick else "")


@dataclasses.dataclass(frozen=True)
class Point:
    """One sweep setting of one PROFIT method.

    Attributes:
      method: registry name (``"profit"`` or ``"profit_sgd"``).
      kind: ``"fixed"`` (explicit SGD reference, ``value`` = λ_ref) or ``"auto"`` (automatic
        reference step, ``value`` = ``ref_scale``).
      value: λ_ref or ``ref_scale``.
    """

    method: str
    kind: str
    value: float

    @property
    def label(self) -> str:
        what = "lambda_ref" if self.kind == "fixed" else "ref_scale"
        return f"{self.method}/{self.kind}/{what}={self.value:.3g}"

    def hparams(self, base: Mapping[str, Any]) -> dict[str, Any]:
        """Registry hparams: the task's ``base`` (learning rate, ...) plus the reference setting."""
        hp = {k: v for k, v in base.items() if k not in ("ref_learning_rate", "ref_scale")}
        if self.kind == "fixed":
            return {**hp, "ref_learning_rate": float(self.value)}
        return {**hp, "ref_learning_rate": None, "ref_scale": float(self.value)}


@dataclasses.dataclass(frozen=True)
class Metric:
    """How a task measures old/new performance."""

    name: str  # e.g. "MSE" or "accuracy (%)"
    lower_is_better: bool

    def better(self, a: float, b: float) -> bool:
        return a < b if self.lower_is_better else a > b

    def best(self, values: Sequence[float]) -> int:
        vals = [
            v if np.isfinite(v) else (math.inf if self.lower_is_better else -math.inf)
            for v in values
        ]
        return int(np.argmin(vals) if self.lower_is_better else np.argmax(vals))


def make_points(
    methods: Mapping[str, Mapping[str, Any]],
    ratios: Sequence[float],
    ref_scales: Sequence[float],
) -> list[Point]:
    """Fixed λ_ref = ratio × λ_main for each ratio, and the automatic rule at each ``ref_scale``
    (the default ``ref_scale`` is always included)."""
    scales = sorted({*map(float, ref_scales), default_ref_scale()})
    points = []
    for name, base in methods.items():
        lr = float(base["learning_rate"])
        points += [Point(name, "fixed", lr * float(r)) for r in sorted(ratios, reverse=True)]
        points += [Point(name, "auto", s) for s in scales]
    return points


def priority_order(
    points: Sequence[Point], methods: Mapping[str, Mapping[str, Any]]
) -> list[Point]:
    """Run order for an expensive sweep that may have to stop early: per method, the automatic
    rule at the default ``ref_scale`` first, then fixed λ_ref by distance (log) from the paper's
    λ_main/100, then the other ``ref_scale`` values."""
    dflt = default_ref_scale()

    def key(p: Point) -> tuple:
        lr = float(methods[p.method]["learning_rate"])
        if p.kind == "auto":
            rank = (0, 0.0) if math.isclose(p.value, dflt) else (2, abs(math.log10(p.value / dflt)))
        else:
            rank = (1, abs(math.log10(p.value / (lr / 100))))
        return (*rank, p.value)

    return sorted(points, key=key)


RunFn = Callable[[Point, int], dict[str, Any]]


def run_sweep(
    points: Sequence[Point],
    seeds: Sequence[int],
    run_fn: RunFn,
    *,
    cache_dir: Path | None = None,
    fingerprint: str = "",
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Runs every point for every seed; returns one record per run.

    ``run_fn(point, seed)`` returns at least ``old_val, new_val, old_test, new_test`` (and may add
    fields, e.g. ``time_s``). Records are cached as JSON under ``cache_dir`` keyed by
    ``fingerprint`` (describe everything but the point and seed in it), so an interrupted sweep
    resumes.
    """
    records = []
    for i, point in enumerate(points):
        for seed in seeds:
            path = None
            if cache_dir is not None:
                safe = point.label.replace("/", "__")
                path = cache_dir / f"{safe}__seed{seed}.json"
                if path.exists():
                    rec = json.loads(path.read_text())
                    if rec.get("fingerprint") == fingerprint:
                        records.append(rec)
                        continue
            t0 = time.perf_counter()
            rec = dict(run_fn(point, seed))
            rec.setdefault("time_s", time.perf_counter() - t0)
            for split in ("val", "test"):
                rec[f"mean_{split}"] = (rec[f"old_{split}"] + rec[f"new_{split}"]) / 2
            rec.update(
                method=point.method,
                kind=point.kind,
                value=point.value,
                label=point.label,
                seed=seed,
                fingerprint=fingerprint,
            )
            records.append(rec)
            if path is not None:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(json.dumps(rec, indent=1))
            log(
                f"[{i + 1}/{len(points)}] {point.label} seed {seed}: old {rec['old_test']:.4g} "
                f"new {rec['new_test']:.4g} (test), {rec['time_s']:.1f}s"
            )
    return records


def reference_stats(rows: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Mean ± sample std over seeds of ``old_test``/``new_test`` rows (adds ``mean_test``)."""
    out = {}
    for f in FIELDS:
        vals = [
            (r["old_test"] + r["new_test"]) / 2 if f == "mean" else r[f"{f}_test"] for r in rows
        ]
        out[f"{f}_test_mean"], out[f"{f}_test_std"] = _stats(vals)
    return out


def _stats(vals: Sequence[float]) -> tuple[float, float]:
    a = np.asarray(vals, dtype=np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def summarize(
    records: Sequence[Mapping[str, Any]],
    metric: Metric,
    learning_rates: Mapping[str, float] | None = None,
) -> dict[str, Any]:
    """Per method: mean ± std per point, the best fixed λ_ref (chosen on validation), the bar.

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
                    row[f"{f}_{split}_mean"], row[f"{f}_{split}_std"] = _stats(vals)
            for key in EXTRA_KEYS:
                vals = [r[key] for r in rs if r.get(key) is not None]
                if vals:
                    row[f"{key}_mean"], row[f"{key}_std"] = _stats(vals)
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
    ma, sa = auto["mean_test_mean"], auto["mean_test_std"]
    mb, sb = best["mean_test_mean"], best["mean_test_std"]
    # positive gap = the automatic rule is worse
    gap = (ma - mb) if metric.lower_is_better else (mb - ma)
    noise = sb
    common = sorted(set(auto["seeds"]) & set(best["seeds"]))
    a = dict(zip(auto["seeds"], auto["mean_test"], strict=True))
    b = dict(zip(best["seeds"], best["mean_test"], strict=True))
    sign = 1.0 if metric.lower_is_better else -1.0
    paired = [sign * (a[s] - b[s]) for s in common]
    pm, ps = _stats(paired) if paired else (math.nan, math.nan)
    return {
        "auto_mean": ma,
        "auto_std": sa,
        "best_mean": mb,
        "best_std": sb,
        "best_value": best["value"],
        "gap": gap,
        "noise": noise,
        "paired_gap_mean": pm,
        "paired_gap_std": ps,
        "holds": bool(gap <= noise),
    }


# --- outputs --------------------------------------------------------------------------------


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
            f"Test {metric.name} ({better} is better), mean ± sample std over seeds; the "
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
                f"| {what}{star} | {_fmt(r['old_test_mean'], r['old_test_std'], digits)} | "
                f"{_fmt(r['new_test_mean'], r['new_test_std'], digits)} | "
                f"{_fmt(r['mean_test_mean'], r['mean_test_std'], digits)} | "
                f"{r['mean_val_mean']:.{digits}f} | {eq} | {pr} | {rm} | {t} |"
            )
        lines.append("")
    lines += [
        "### The bar: automatic rule (default ref_scale) vs the best fixed λ_ref",
        "",
        f"Test mean-of-old-and-new {metric.name} ({better} is better). Best fixed λ_ref chosen "
        "on validation; gap > 0 means the automatic rule is worse; noise = the best fixed λ_ref's "
        "sample std over seeds; within noise = gap ≤ noise; paired gap = per-seed difference, "
        "mean ± std.",
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
                f"{_fmt(b['best_mean'], b['best_std'], digits)} | "
                f"{_fmt(b['auto_mean'], b['auto_std'], digits)} | {b['gap']:+.{digits}f} | "
                f"{b['noise']:.{digits}f} | "
                f"{_fmt(b['paired_gap_mean'], b['paired_gap_std'], digits)} | "
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
    numbers (``old_test_mean``, ``old_test_std``, ... for old/new/mean), drawn in grey."""
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
        "records": [{k: v for k, v in r.items() if k != "fingerprint"} for r in records],
    }
    paths["json"].write_text(json.dumps(payload, indent=1, default=_json_default))
    cols = ["method", "kind", "value", "seed", "old_val", "new_val", "mean_val"]
    cols += ["old_test", "new_test", "mean_test", *EXTRA_KEYS]
    with open(paths["csv"], "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in records:
            w.writerow([_csv(r.get(c)) for c in cols])
    md = [f"# λ_ref sensitivity sweep: {title}", ""]
    md += [f"- {k}: {v}" for k, v in meta.items() if isinstance(v, str | int | float | list)]
    if reference:
        md.append(
            "- no fine-tuning (pretrained model, test): "
            + ", ".join(
                f"{f} {_fmt(reference[f'{f}_test_mean'], reference[f'{f}_test_std'], digits)}"
                for f in FIELDS
            )
        )
    md += ["", format_tables(summary, metric, digits)]
    paths["md"].write_text("\n".join(md))
    plot(paths["png"], summary, metric, title=title, reference=reference)
    return paths


def _csv(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(type(o))


_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:red")


def plot(
    path: Path,
    summary: Mapping[str, Any],
    metric: Metric,
    *,
    title: str,
    reference: Mapping[str, float] | None = None,
) -> None:
    """Two rows × three columns (old, new, mean metric on test).

    Top row: metric against the fixed λ_ref (log axis, mean ± std over seeds, ★ = chosen on
    validation) with the automatic rule at the default ``ref_scale`` as a horizontal band
    (mean ± std). Bottom row: the automatic rule against ``ref_scale``, with the best fixed
    λ_ref (chosen on validation) as the band.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5), squeeze=False)
    better = "lower" if metric.lower_is_better else "higher"
    names = {"old": "old task", "new": "new task", "mean": "mean of old and new"}
    for m_i, (method, res) in enumerate(summary.items()):
        c = _COLORS[m_i % len(_COLORS)]
        fixed = [r for r in res["points"] if r["kind"] == "fixed"]
        auto = [r for r in res["points"] if r["kind"] == "auto"]
        dflt = res.get("auto_default")
        best = res.get("best_fixed")
        for j, f in enumerate(FIELDS):
            for row, pts, band, band_label, xl in (
                (0, fixed, dflt, f"{method}: auto (ref_scale={default_ref_scale():g})", "λ_ref"),
                (1, auto, best, f"{method}: best fixed λ_ref (val)", "ref_scale"),
            ):
                ax = axes[row, j]
                if pts:
                    x = [r["value"] for r in pts]
                    y = [r[f"{f}_test_mean"] for r in pts]
                    e = [r[f"{f}_test_std"] for r in pts]
                    kind = "fixed SGD λ_ref" if row == 0 else "auto rule"
                    ax.errorbar(
                        x, y, yerr=e, color=c, marker="o", capsize=3, label=f"{method}: {kind}"
                    )
                    for r in pts:  # every seed, faint: shows single-seed blow-ups
                        vals = r[f"{f}_test"]
                        ax.plot([r["value"]] * len(vals), vals, ".", color=c, alpha=0.35, ms=4)
                    if row == 0 and best is not None:
                        ax.plot(
                            [best["value"]],
                            [best[f"{f}_test_mean"]],
                            marker="*",
                            ms=16,
                            color=c,
                            mec="k",
                            ls="",
                        )
                if row == 0 and dflt is not None and dflt.get("lambda_equiv_mean"):
                    ax.axvline(
                        dflt["lambda_equiv_mean"],
                        color=c,
                        ls=":",
                        lw=1.2,
                        label=f"{method}: auto's ‖Δ‖/‖g‖ (equivalent λ_ref)",
                    )
                if band is not None:
                    mu, sd = band[f"{f}_test_mean"], band[f"{f}_test_std"]
                    # on a log axis a band reaching below 0 would fill the whole panel:
                    # draw only its upper half then
                    low = mu - sd if (mu - sd > 0 or not metric.lower_is_better) else mu
                    ax.axhspan(low, mu + sd, color=c, alpha=0.15)
                    label = band_label
                    if row == 1:
                        label += f" = {band['value']:.2g}"
                    ax.axhline(mu, color=c, ls="--", lw=1, label=label)
                lr = res.get("learning_rate")
                if row == 0 and lr and m_i == 0:
                    ax.axvspan(
                        lr / 1e4,
                        lr / 10,
                        color="0.9",
                        zorder=0,
                        label="paper's range λ_main/10…/10⁴",
                    )
                ax.set_xscale("log")
                if metric.lower_is_better:  # errors: blow-ups span many decades
                    ax.set_yscale("log")
                ax.set_xlabel(xl)
                ax.set_title(f"{names[f]}, test {metric.name} ({better} is better)", fontsize=10)
                ax.grid(alpha=0.3, which="both")
    if reference:
        for ax, f in zip(axes.T, FIELDS, strict=True):
            for a in ax:
                a.axhline(
                    reference[f"{f}_test_mean"],
                    color="grey",
                    ls="-.",
                    lw=1,
                    label=("no fine-tuning (pretrained)"),
                )
    for row in range(2):
        handles, labels = axes[row, 2].get_legend_handles_labels()
        axes[row, 2].legend(
            handles, labels, fontsize=8, loc="center left", bbox_to_anchor=(1.02, 0.5)
        )
    fig.suptitle(
        f"{title}\ntop: fixed SGD reference λ_ref (★ chosen on validation) vs the automatic "
        "rule (band: mean ± std over seeds); bottom: the automatic rule's ref_scale",
        fontsize=11,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def versions() -> dict[str, str]:
    """Library versions and machine description recorded with the results."""
    import os

    from experiments.toy2d.main import versions as toy_versions

    return {**toy_versions(), "cpus": str(os.cpu_count())}


def rewrite(json_path: Path) -> dict[str, Path]:
    """Recomputes the summary, tables and plot of a finished sweep from its ``*_sweep.json``
    (its records), with the current code: ``python -m experiments.lambda_sweep.sweep FILE...``."""
    payload = json.loads(Path(json_path).read_text())
    metric = Metric(**payload["metric"])
    records = payload["records"]
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
        reference=payload.get("no_fine_tuning"),
        digits=4 if metric.lower_is_better else 2,
    )


if __name__ == "__main__":
    import sys

    for arg in sys.argv[1:]:
        print(rewrite(Path(arg)))
