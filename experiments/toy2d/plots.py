"""Figures of the 2D toy: learned functions, a 1D slice, the old/new trade-off, error curves."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt  # no backend forced: Agg headless, inline in Jupyter
import numpy as np
from ml_collections import ConfigDict

from experiments.common.plotting import method_color
from experiments.toy2d import data as data_lib

LIMITS = (-3.0, 3.0, -2.5, 2.5)  # x1 min, x1 max, x2 min, x2 max of the plotted window
DIVERGED = 10.0  # sweep trials with a validation MSE above this are reported as diverged

OLD_COLOR, NEW_COLOR = "tab:blue", "tab:orange"
LABELS = {
    "pretrained": "pretrained (before)",
    "adam": "full FT (Adam)",
    "head_only": "head-only FT",
    "profit": "PROFIT",
}


def _predict(model: Any, params: Any, x: np.ndarray) -> np.ndarray:
    return np.asarray(model.apply({"params": params}, x))[..., 0]


def _grid(n: int = 121) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    g1 = np.linspace(LIMITS[0], LIMITS[1], n, dtype=np.float32)
    g2 = np.linspace(LIMITS[2], LIMITS[3], n, dtype=np.float32)
    x1, x2 = np.meshgrid(g1, g2)
    return x1, x2, np.stack([x1, x2], -1).reshape(-1, 2)


def _support(ax: plt.Axes, cfg: ConfigDict) -> None:
    """Draws the 2-sigma circles of the old and new input distributions."""
    for c, color, label in [(cfg.old_center, OLD_COLOR, "old"), (cfg.new_center, NEW_COLOR, "new")]:
        ax.add_patch(
            plt.Circle(c, 2 * cfg.input_std, fill=False, ls="--", lw=1.4, color=color, label=label)
        )


def plot_functions(
    model: Any,
    params: Mapping[str, Any],
    toy: data_lib.ToyData,
    cfg: ConfigDict,
    path: Path,
    *,
    seed: int = 0,
) -> None:
    """Heatmaps of the targets and of each model (top) and of each model's error (bottom).

    The error row shows ``|model(x) - f_new(x)|``: ``f_new`` equals ``f_old`` on the old data's
    support, so one target serves both tasks. Dashed circles: 2σ of the old/new input densities.
    """
    x1, _, xs = _grid()
    truth_old = data_lib.f_old(xs, cfg).reshape(x1.shape)
    truth_new = data_lib.f_new(xs, cfg).reshape(x1.shape)
    preds = {k: _predict(model, p, xs).reshape(x1.shape) for k, p in params.items()}
    ncol = 2 + len(preds)
    fig, axes = plt.subplots(2, ncol, figsize=(3.0 * ncol, 5.9), constrained_layout=True)
    vmax = float(np.abs(truth_new).max())
    extent = LIMITS
    kw = dict(origin="lower", extent=extent, cmap="RdBu_r", vmin=-vmax, vmax=vmax)
    top = [("target: old f", truth_old), ("target: new f", truth_new)]
    top += [(LABELS.get(k, k), v) for k, v in preds.items()]
    im = None
    for ax, (title, z) in zip(axes[0], top, strict=True):
        im = ax.imshow(z, **kw)
        ax.set_title(title, fontsize=10)
        _support(ax, cfg)
    fig.colorbar(im, ax=axes[0], shrink=0.85, label="f(x)")
    # Bottom row: data on the left, then error maps.
    ax = axes[1, 0]
    ax.scatter(*toy.old.train.x[:400].T, s=4, c=OLD_COLOR, alpha=0.6, label="old train")
    ax.scatter(*toy.new.train.x[:400].T, s=4, c=NEW_COLOR, alpha=0.6, label="new train")
    ax.set_xlim(extent[:2])
    ax.set_ylim(extent[2:])
    ax.set_aspect("equal")
    ax.set_title("training inputs", fontsize=10)
    ax.legend(fontsize=7, loc="lower left", markerscale=3)
    ax = axes[1, 1]
    im_b = ax.imshow(truth_new - truth_old, **kw)
    ax.set_title("new f − old f (the bump)", fontsize=10)
    _support(ax, cfg)
    emax = 1.0
    em = None
    for ax, (k, z) in zip(axes[1, 2:], preds.items(), strict=True):
        em = ax.imshow(
            np.abs(z - truth_new), origin="lower", extent=extent, cmap="magma", vmin=0, vmax=emax
        )
        ax.set_title(f"|error|: {LABELS.get(k, k)}", fontsize=10)
        _support(ax, cfg)
    del im_b
    fig.colorbar(em, ax=axes[1], shrink=0.85, label="|model − new f| (clipped at 1)")
    axes[0, 0].legend(fontsize=7, loc="lower left")
    for ax in axes.flat:
        ax.set_xticks([-2, 0, 2])
        ax.set_yticks([-2, 0, 2])
    fig.suptitle(f"2D toy: targets, learned functions (seed {seed}) and their errors")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_slice(model: Any, params: Mapping[str, Any], cfg: ConfigDict, path: Path) -> None:
    """The functions along the line through both input centres (``x2 = old_center[1]``)."""
    x1 = np.linspace(LIMITS[0], LIMITS[1], 400, dtype=np.float32)
    xs = np.stack([x1, np.full_like(x1, cfg.old_center[1])], -1)
    fig, ax = plt.subplots(figsize=(8, 4), constrained_layout=True)
    for c, color, lab in [(cfg.old_center, OLD_COLOR, "old"), (cfg.new_center, NEW_COLOR, "new")]:
        ax.axvspan(
            c[0] - 2 * cfg.input_std,
            c[0] + 2 * cfg.input_std,
            color=color,
            alpha=0.08,
            label=f"{lab} data (±2σ)",
        )
    ax.plot(x1, data_lib.f_old(xs, cfg), "k--", lw=1.5, label="target: old f")
    ax.plot(x1, data_lib.f_new(xs, cfg), "k-", lw=2.5, alpha=0.35, label="target: new f")
    styles = {"pretrained": ":", "adam": "-", "head_only": "-.", "profit": "-"}
    for k, p in params.items():
        ax.plot(x1, _predict(model, p, xs), styles.get(k, "-"), lw=1.6, label=LABELS.get(k, k))
    lo, hi = float(data_lib.f_new(xs, cfg).min()), float(data_lib.f_new(xs, cfg).max())
    ax.set_ylim(lo - 0.6 * (hi - lo), hi + 0.6 * (hi - lo))  # extrapolations may leave the frame
    ax.set_xlabel(f"x1  (x2 = {cfg.old_center[1]:g})")
    ax.set_ylabel("f(x)")
    ax.set_title("1D slice through both data clouds")
    ax.legend(fontsize=8, ncol=2)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_tradeoff(summary: Mapping[str, Mapping[str, float]], path: Path) -> None:
    """Old- vs new-data test MSE per method, mean ± standard error over seeds (log-log)."""
    fig, ax = plt.subplots(figsize=(8, 6), constrained_layout=True)
    cmap = plt.get_cmap("tab20")
    markers = "osD^v<>phX"
    for i, (name, s) in enumerate(summary.items()):
        color = "black" if name == "pretrained" else method_color(cmap, i)
        marker = "*" if name in ("profit", "pretrained") else markers[i % len(markers)]
        mx, my = s["new_test_mean"], s["old_test_mean"]
        # Log axes: a lower bar reaching below zero (se > mean) is clipped at mean / 10.
        low = lambda m, sd: min(sd, 0.9 * m)
        ax.errorbar(
            mx,
            my,
            xerr=[[low(mx, s["new_test_se"])], [s["new_test_se"]]],
            yerr=[[low(my, s["old_test_se"])], [s["old_test_se"]]],
            fmt=marker,
            ms=12 if marker == "*" else 7,
            color=color,
            capsize=3,
            label=name,
        )
        ax.annotate(
            name,
            (mx, my),
            xytext=(6, 5 if i % 2 == 0 else -12),
            textcoords="offset points",
            fontsize=8,
            color=color,
        )
    ax.set_xscale("log")
    ax.set_yscale("log")
    lo, hi = ax.get_xlim()
    ax.set_xlim(lo, hi * 1.6)  # room for the labels
    ax.set_xlabel("new-data MSE (test)  →  worse")
    ax.set_ylabel("old-data MSE (test)  →  more forgetting")
    ax.set_title(
        "Fine-tuning trade-off (mean ± standard error over seeds; lower-left is better)\n"
        "lower error bars clipped at mean/10 on the log axes",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2, loc="best")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_curves(curves: Mapping[str, list[list[Mapping[str, float]]]], path: Path) -> None:
    """Old- and new-data validation MSE during fine-tuning, mean over seeds."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), constrained_layout=True, sharex=True)
    cmap = plt.get_cmap("tab20")
    for i, (name, runs) in enumerate(curves.items()):
        steps = [c["step"] for c in runs[0]]
        for ax, key in zip(axes, ["old", "new"], strict=True):
            vals = np.mean([[c[key] for c in run] for run in runs], axis=0)
            ax.plot(
                steps,
                vals,
                color=method_color(cmap, i + 1),
                lw=2.2 if name == "profit" else 1.2,
                label=name,
            )
    for ax, key in zip(axes, ["old", "new"], strict=True):
        ax.set_yscale("log")
        ax.set_xlabel("update calls (= gradient evaluations)")
        ax.set_ylabel(f"{key}-data MSE (validation)")
        ax.grid(True, which="both", alpha=0.3)
    axes[1].legend(fontsize=8, ncol=2)
    fig.suptitle("Fine-tuning curves (mean over seeds)")
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_sweep(result: Mapping[str, Any], path: Path) -> None:
    """Old- vs new-data validation MSE of every sweep trial (tuning seeds).

    Trials of one method that differ only in ``learning_rate`` are joined by a line (the
    method's trade-off frontier as the learning rate grows); the selected trial is circled.
    Non-finite trials (diverged) are left out.
    """
    fig, ax = plt.subplots(figsize=(8, 6), constrained_layout=True)
    cmap = plt.get_cmap("tab20")
    shown = lambda t: all(
        np.isfinite(t[k]) and t[k] < DIVERGED for k in ("old_val_mean", "new_val_mean")
    )
    n_hidden = 0
    for i, (name, trials) in enumerate(result["trials"].items()):
        color = method_color(cmap, i + 1)
        groups: dict[tuple, list] = {}
        for t in trials:
            key = tuple(sorted((k, v) for k, v in t["hparams"].items() if k != "learning_rate"))
            groups.setdefault(key, []).append(t)
        for j, (key, ts) in enumerate(groups.items()):
            ts = sorted(ts, key=lambda t: t["hparams"].get("learning_rate", 0.0))
            n_hidden += sum(not shown(t) for t in ts)
            pts = [(t["new_val_mean"], t["old_val_mean"]) for t in ts if shown(t)]
            if not pts:
                continue
            xs, ys = zip(*pts, strict=True)
            extra = ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in key)
            ax.plot(
                xs,
                ys,
                marker="o",
                color=color,
                ms=4,
                lw=1.6 if name == "profit" else 1.0,
                ls=["-", "--", ":", "-."][j % 4],
                label=f"{name}" + (f" ({extra})" if extra else ""),
            )
        sel = next(t for t in trials if t["hparams"] == result["selected"][name])
        if shown(sel):
            ax.plot(
                sel["new_val_mean"], sel["old_val_mean"], "o", ms=12, mfc="none", mec=color, mew=2
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("new-data MSE (validation)")
    ax.set_ylabel("old-data MSE (validation)")
    hidden = f"; {n_hidden} diverged trial(s) (MSE > {DIVERGED:g}) not shown" if n_hidden else ""
    ax.set_title(
        "Learning-rate sweep on tuning seeds (lines: increasing learning rate;\n"
        f"circles: selected by new-data validation MSE{hidden})",
        fontsize=10,
    )
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.savefig(path, dpi=110)
    plt.close(fig)
