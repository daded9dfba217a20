"""PNG plots: old-vs-new trade-off scatter with error bars, learning curves over seeds."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt  # no backend forced: Agg headless, inline in Jupyter
import numpy as np


def method_color(cmap: Any, i: int) -> Any:
    """Distinct colours for up to 20 series: tab20's dark shades first, then its light ones."""
    return cmap((2 * i) % 20 + (i // 10) % 2)


def plot_tradeoff(
    rows: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    x: str,
    y: str,
    label_key: str,
    xlabel: str,
    ylabel: str,
    title: str = "",
    scale: float = 1.0,
    reference_x: float | None = None,
    reference_label: str = "before fine-tuning",
) -> Path:
    """Scatter of ``<x>_mean`` vs ``<y>_mean`` per row with ``_se`` (standard error) bars.

    Args:
      rows: aggregated rows (see :func:`experiments.common.results.aggregate`).
      path: PNG file to write.
      x, y: metric names (the rows hold ``<metric>_mean`` and ``<metric>_se``).
      label_key: row field used to annotate each point.
      xlabel, ylabel, title: axis labels and title.
      scale: multiply values by this (e.g. 100 for percent).
      reference_x: draw a vertical dashed line here (e.g. the old-task accuracy
        of the pretrained model).
      reference_label: legend text of that line.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7.6, 4.8), dpi=120)
    colors = plt.get_cmap("tab20")
    for i, row in enumerate(rows):
        ax.errorbar(
            row[f"{x}_mean"] * scale,
            row[f"{y}_mean"] * scale,
            xerr=row[f"{x}_se"] * scale,
            yerr=row[f"{y}_se"] * scale,
            fmt="o",
            capsize=3,
            color=method_color(colors, i),
            label=str(row[label_key]),
        )
    if reference_x is not None:
        ax.axvline(reference_x * scale, color="gray", ls="--", lw=1, label=reference_label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_learning_curves(
    records: Sequence[Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    metrics: Sequence[tuple[str, str]],
    label_key: str,
    history_key: str = "history",
    step_key: str = "step",
    scale: float = 1.0,
    title: str = "",
) -> Path:
    """One panel per metric: mean over records of each label vs step, ±1 standard error shaded.

    Args:
      records: per-run dicts holding ``label_key`` and a ``history`` list of
        dicts with ``step`` and the metrics (runs of one label must share steps).
      path: PNG file to write.
      metrics: ``(metric, panel title)`` pairs; history entries lacking the
        metric are skipped.
      label_key: record field grouping runs into one curve.
      history_key, step_key: where the curve points live.
      scale: multiply values by this.
      title: figure title.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    labels = list(dict.fromkeys(r[label_key] for r in records))
    fig, axes = plt.subplots(
        1, len(metrics), figsize=(4.8 * len(metrics), 3.8), dpi=120, squeeze=False
    )
    colors = plt.get_cmap("tab20")
    for ax, (metric, panel_title) in zip(axes[0], metrics, strict=True):
        for i, label in enumerate(labels):
            curves = []
            for r in records:
                if r[label_key] != label:
                    continue
                points = [(h[step_key], h[metric]) for h in r[history_key] if metric in h]
                curves.append(points)
            if not curves or not curves[0]:
                continue
            steps = np.array([s for s, _ in curves[0]])
            values = np.array([[v for _, v in c] for c in curves]) * scale
            mean = values.mean(0)
            n = len(curves)
            std = values.std(0, ddof=1) / np.sqrt(n) if n > 1 else np.zeros_like(mean)
            color = method_color(colors, i)
            ax.plot(steps, mean, marker=".", color=color, label=str(label))
            if len(curves) > 1:
                ax.fill_between(steps, mean - std, mean + std, color=color, alpha=0.15)
        if "loss" in metric:  # a diverging run would flatten every other curve
            ax.set_yscale("log")
        ax.set_title(panel_title)
        ax.set_xlabel("update calls (= gradient evaluations)")
        ax.grid(alpha=0.3)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, fontsize=8, loc="center right")
    if title:
        fig.suptitle(title)
    fig.tight_layout(rect=(0.0, 0.0, 1.0 - 0.9 / fig.get_figwidth(), 1.0))
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_seed_tradeoff(
    rows: Mapping[str, Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    xlabel: str,
    ylabel: str,
    title: str,
    scale: float = 1.0,
    xlog: bool = False,
    reference_x: float | None = None,
) -> Path:
    """Old (x) vs new (y) test metric of every row of a protocol suite: the mean ± standard
    error over seeds, and each seed as a faint dot.

    ``rows``: label -> ``{"runs": [{"test": {"old", "new"}}, ...], "summary": {...}}`` as
    written by :func:`experiments.common.protocol.attach_runs`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 5.2), dpi=110)
    cmap = plt.get_cmap("tab20")
    for i, (label, row) in enumerate(rows.items()):
        s, color = row["summary"], method_color(cmap, i)
        xs = [scale * r["test"]["old"] for r in row["runs"]]
        ys = [scale * r["test"]["new"] for r in row["runs"]]
        ax.scatter(xs, ys, s=8, color=color, alpha=0.35)
        ax.errorbar(
            scale * s["test_old_mean"],
            scale * s["test_new_mean"],
            xerr=scale * s["test_old_se"],
            yerr=scale * s["test_new_se"],
            fmt="o",
            color=color,
            capsize=3,
            label=label,
        )
    if reference_x is not None:
        ax.axvline(scale * reference_x, ls="--", color="gray", lw=1, label="before fine-tuning")
    if xlog:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(f"{title}\nmean ± SE over seeds; dots: seeds")
    ax.legend(fontsize=7, ncol=2, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_row_curves(
    rows: Mapping[str, Mapping[str, Any]],
    path: str | os.PathLike[str],
    *,
    panels: Sequence[tuple[str, str]],
    title: str,
    scale: float = 1.0,
    ylog: bool = False,
) -> Path:
    """One panel per ``(curve key, y label)``: each row's curve, mean over its seeds' runs
    (``run["curve"]``: points with ``step`` and the keys), against update calls."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), dpi=110, squeeze=False)
    cmap = plt.get_cmap("tab20")
    for i, (label, row) in enumerate(rows.items()):
        for ax, (key, _) in zip(axes[0], panels, strict=True):
            points = [[(p["step"], p[key]) for p in r["curve"] if key in p] for r in row["runs"]]
            if not points or not points[0]:
                continue
            steps = [st for st, _ in points[0]]
            mean = np.mean([[scale * v for _, v in run] for run in points], axis=0)
            ax.plot(steps, mean, color=method_color(cmap, i), label=label)
    for ax, (_, ylabel) in zip(axes[0], panels, strict=True):
        ax.set_xlabel("update calls (gradient evaluations)")
        ax.set_ylabel(ylabel)
        if ylog:
            ax.set_yscale("log")
    handles, labels = axes[0][0].get_legend_handles_labels()
    ncol = min(len(labels), 4)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.suptitle(title)
    rows_of_legend = -(-len(labels) // ncol) if labels else 0
    fig.tight_layout(rect=(0, 0.05 + 0.06 * rows_of_legend, 1, 1))
    fig.savefig(path)
    plt.close(fig)
    return path
