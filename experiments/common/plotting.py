"""PNG plots of the suites: old-vs-new trade-off with every seed, curves along fine-tuning."""

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


def plot_pretraining(
    history: Sequence[Mapping[str, Any]],
    key: str,
    path: str | os.PathLike[str],
    *,
    ylabel: str,
    scale: float = 1.0,
) -> Path:
    """A pretraining run's validation metric ``key`` against its steps (the convergence
    check of a suite's pretraining)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=110)
    ax.plot([h["step"] for h in history], [scale * h[key] for h in history], "o-")
    ax.set_xlabel("pretraining step")
    ax.set_ylabel(ylabel)
    ax.set_title("pretraining (AdamW): convergence")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
