"""The figure of a λ_ref sweep."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiments.lambda_sweep.grid import default_ref_scale
from experiments.lambda_sweep.stats import FIELDS, Metric

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

    Top row: metric against the fixed λ_ref (log axis, mean ± standard error over seeds,
    ★ = chosen on validation) with the automatic rule at the default ``ref_scale`` as a
    horizontal band (mean ± standard error). Bottom row: the automatic rule against
    ``ref_scale``, with the best fixed λ_ref (chosen on validation) as the band.
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
                    e = [r[f"{f}_test_se"] for r in pts]
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
                    mu, sd = band[f"{f}_test_mean"], band[f"{f}_test_se"]
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
        "rule (band: mean ± standard error over seeds); bottom: the automatic rule's ref_scale",
        fontsize=11,
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
