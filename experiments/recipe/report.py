"""Tables and figures of a recipe suite, from its ``results.json`` only.

:func:`tables` renders every table; ``results.md`` and the README blocks
(``python -m experiments.report``) are both made from it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiments.common import protocol
from experiments.paper_toy.report import _table

#: The paper's Table 2, ViT-Tiny, CIFAR-10 → CIFAR-100 (old / new test accuracy, %), copied
#: exactly; pretrained CIFAR-10 accuracy 82.38%.
PAPER_TABLE_2_VIT_TINY = {
    "sgd": (53.63, 61.98),
    "adam": (56.00, 58.99),
    "lookahead": (55.64, 61.35),
    "adan": (53.04, 61.62),
    "profit": (58.53, 62.20),
}
PAPER_PRETRAINED_VIT_TINY = 82.38


def _pct(mean: float, se: float | None) -> str:
    if mean is None or math.isnan(mean):
        return "–"
    return f"{100 * mean:.2f} ± {100 * se:.2f}" if se is not None else f"{100 * mean:.2f}"


def _acc_cells(s: Mapping[str, Any], keys=("old", "new", "mean")) -> list[str]:
    return [_pct(s[f"test_{k}_mean"], s[f"test_{k}_se"]) for k in keys]


def paper_table(res: Mapping[str, Any]) -> str:
    header = ["method", "paper ViT-Tiny: old / new (%)", "ours: old (%)", "ours: new (%)"]
    rows = [
        [
            "pretrained",
            f"{PAPER_PRETRAINED_VIT_TINY} / –",
            _pct(res["pretrained"]["old_test_acc"], None),
            "–",
        ]
    ]
    for label, (p_old, p_new) in PAPER_TABLE_2_VIT_TINY.items():
        row = res["rows"].get(label)
        cells = _acc_cells(row["summary"], ("old", "new")) if row else ["–", "–"]
        rows.append([f"`{label}`", f"{p_old:.2f} / {p_new:.2f}", *cells])
    n = len(res["config"]["seeds"])
    return _table(header, rows) + (
        f"\n\nTest accuracy, {res['spread']} (n = {n}); every method at its own learning rate "
        "(validation), equal gradient evaluations. Paper: CIFAR-10 → CIFAR-100, Table 2.\n\n"
        + ordering_sentence(res)
    )


def ordering_sentence(res: Mapping[str, Any]) -> str:
    """Whether the paper's claim (PROFIT first on old and on new accuracy among its five
    methods) reproduces, from the means."""
    names = [k for k in PAPER_TABLE_2_VIT_TINY if k in res["rows"]]
    if "profit" not in names:
        return ""
    out = []
    for key, what in (("old", "old"), ("new", "new")):
        means = {k: res["rows"][k]["summary"][f"test_{key}_mean"] for k in names}
        order = sorted(means, key=means.__getitem__, reverse=True)
        rank = order.index("profit") + 1
        out.append(f"PROFIT ranks {rank} of {len(names)} on {what}-task accuracy")
    verdict = "reproduces" if all(" 1 of" in o for o in out) else "does not reproduce"
    return (
        f"Paper's ordering (PROFIT first on both among SGD, Adam, Lookahead, Adan, PROFIT) "
        f"{verdict}: " + ", ".join(out) + " (means above)."
    )


def tuned_table(res: Mapping[str, Any]) -> str:
    header = ["method", "selected (validation)", "old (%)", "new (%)", "mean (%)", "val score (%)"]
    rows = []
    for label, sel in res["selection"].items():
        s = res["rows"][label]["summary"]
        edge = " (grid edge)" if sel["at_edge"] else ""
        best = " **best baseline**" if label == res["best_baseline"] else ""
        rows.append(
            [
                f"`{label}`{best}",
                protocol.hparams_text(sel["hparams"]) + edge,
                *_acc_cells(s),
                f"{-100 * sel['score']:.2f}",
            ]
        )
    n = len(res["config"]["seeds"])
    calls = res["config"]["finetune"]["budget"]
    return _table(header, rows) + (
        f"\n\nTest accuracy, {res['spread']} (n = {n}); {calls} update calls (gradient "
        "evaluations) each. val score: mean of old and new validation accuracy over the tuning "
        "seeds (the selection criterion)."
    )


def ablation_table(res: Mapping[str, Any], kind: str) -> str:
    header = [kind.replace("ratio", "λ_main / λ_ref"), "old (%)", "new (%)", "mean (%)"]
    rows = []
    for label, row in res["rows"].items():
        if label.startswith(f"ablation:{kind}="):
            rows.append([label.split("=")[1], *_acc_cells(row["summary"])])
    base = res["selection"][res["config"]["ablation"]["method"]]["hparams"]
    paper = {
        "ratio": "Paper (Table 9): best ratio 10 (ResNet-18), 1000 (ViT-Tiny, old accuracy), "
        "100 (ViT-Small); larger λ_ref promotes new-task accuracy, smaller mitigates forgetting.",
        "n_ref": "Paper (Table 8): larger n_ref keeps the old task better and learns the new "
        "one less.",
    }[kind]
    return _table(header, rows) + (
        f"\n\nPROFIT at its selected point ({protocol.hparams_text(base)}) with one setting "
        "changed; test accuracy, "
        f"{res['spread']}. {paper}"
    )


def _points(d: Mapping[str, float]) -> str:
    """A paired difference of accuracies in points: ``mean [lo, hi]``."""
    return f"{100 * d['mean']:+.2f} [{100 * d['lo']:+.2f}, {100 * d['hi']:+.2f}]"


def comparison_table(res: Mapping[str, Any]) -> str:
    header = [
        "PROFIT row",
        "best baseline",
        "Δ old (pts)",
        "Δ new (pts)",
        "Δ mean (pts)",
        "verdict",
    ]
    rows = []
    for label, diff in res["comparisons"].items():
        cells = [_points(diff[k]) for k in ("old", "new", "mean")]
        rows.append(
            [
                f"`{label}`",
                f"`{res['best_baseline']}`",
                *cells,
                protocol.word(diff["mean"], lower_is_better=False),
            ]
        )
    p = res["plateau"]
    return _table(header, rows) + (
        "\n\nPROFIT minus the best baseline (best validation score), paired over the reporting "
        "seeds, test accuracy in points, mean [95% t-interval]. Plateau check: the best "
        f"baseline's new-task validation accuracy rose {100 * p['gain']:+.2f} points over the "
        f"last 30% of its run (from call {p['from_step']}): "
        + ("plateaued." if p["plateaued"] else "**not plateaued**.")
        + _start_sentence(res)
    )


def _start_sentence(res: Mapping[str, Any]) -> str:
    """The pretrained model's test accuracy on the old and the new test images, where both
    share its head (the same-label tasks), as a sentence; else nothing."""
    start = res["pretrained"].get("start")
    if start is None:
        return ""
    t = start["test"]
    return (
        f" Before fine-tuning, the pretrained model's test accuracy: old {100 * t['old']:.2f}%, "
        f"new {100 * t['new']:.2f}%."
    )


#: Plain continued training, the reference of the maintenance task (the paper's car → car).
CONTINUED = ("adam", "adamw")


def continued_table(res: Mapping[str, Any]) -> str:
    """Every method (the tuned rows and the equal-main-steps rows) minus plain continued
    Adam and AdamW, paired over the reporting seeds on the mean test accuracy, and a
    sentence counting the methods that beat each at either budget."""
    refs = [r for r in CONTINUED if r in res["rows"]]
    labels = [k for k in res["rows"] if not k.startswith("ablation:") and k not in refs]
    header = ["method", *(f"minus continued `{r}` (pts)" for r in refs)]
    diffs = {r: protocol.paired_to(res["rows"], r, labels) for r in refs}
    rows, beat = [], {(r, main): [] for r in refs for main in (False, True)}
    for label in labels:
        cells = [f"`{label}`"]
        for r in refs:
            d = diffs[r][label]["mean"]
            w = protocol.word(d, lower_is_better=False)
            cells.append(f"{_points(d)} {w}")
            if w == "better":
                beat[(r, label.endswith("@main"))].append(f"`{label}`")
        rows.append(cells)
    n_main = sum(k.endswith("@main") for k in labels)
    counts = []
    for main, n in ((False, len(labels) - n_main), (True, n_main)):
        if not n:
            continue
        beats = []
        for r in refs:
            names = beat[(r, main)]
            beats.append(
                f"{len(names)} of {n} beat continued `{r}`"
                + (f" ({', '.join(names)})" if names else "")
            )
        what = "At equal main steps" if main else "At equal gradient evaluations"
        counts.append(f"{what}, " + " and ".join(beats) + ".")
    refs_text = " or ".join(f"`{r}`" for r in refs)
    return _table(header, rows) + (
        f"\n\nEach method minus plain continued {refs_text} (each at its own "
        "validation-chosen learning rate), paired over the reporting seeds, mean test accuracy "
        "in points, mean [95% t-interval]; better / worse when the interval excludes 0, "
        f"{len(labels)} comparisons per column with no correction for multiplicity (about one "
        "in twenty excludes 0 by chance alone). Rows ending `@main` ran as many main steps as "
        "the others ran gradient evaluations (PROFIT and SAM take two gradients per main step, "
        "so these rows used twice the gradients). " + " ".join(counts)
    )


def tables(res: Mapping[str, Any], prefix: str) -> dict[str, str]:
    """The suite's tables by name: beside the paper (class split only), tuned, ablations
    (when run), PROFIT against the best baseline, and on maintenance every method against
    plain continued Adam/AdamW."""
    out = {}
    if res["config"]["task"]["kind"] == "class_split":
        out[f"{prefix}_table2"] = paper_table(res)
    out[f"{prefix}_tuned"] = tuned_table(res)
    for kind in ("ratio", "n_ref"):
        if any(k.startswith(f"ablation:{kind}=") for k in res["rows"]):
            out[f"{prefix}_{kind}"] = ablation_table(res, kind)
    out[f"{prefix}_vs_best"] = comparison_table(res)
    if res["config"]["task"]["kind"] == "maintenance" and any(r in res["rows"] for r in CONTINUED):
        out[f"{prefix}_vs_continued"] = continued_table(res)
    return out


def write_markdown(res: Mapping[str, Any], path: Path, prefix: str) -> Path:
    from experiments.common.results import write_text_atomic

    return write_text_atomic(path, markdown(res, prefix))


def markdown(res: Mapping[str, Any], prefix: str) -> str:
    """The suite's ``results.md``: every table of :func:`tables` and the provenance."""
    from experiments.common.results import provenance

    titles = {
        "table2": "Beside the paper (Table 2, ViT-Tiny)",
        "tuned": "Every method at its own learning rate",
        "ratio": "Ablation: λ ratio (Table 9)",
        "n_ref": "Ablation: n_ref (Table 8)",
        "vs_best": "PROFIT against the best baseline",
        "vs_continued": "Every method against plain continued training",
    }
    pre = res["pretrained"]
    hist = pre["history"]
    parts = [
        f"# {res['name']}",
        "",
        f"Pretrained: old-task validation accuracy {100 * pre['old_val_acc']:.2f}% "
        f"(curve: " + ", ".join(f"{h['step']}: {100 * h['old_val_acc']:.1f}" for h in hist) + "); "
        f"test {100 * pre['old_test_acc']:.2f}%.",
        "",
    ]
    for name, table in tables(res, prefix).items():
        parts += [f"## {titles[name.removeprefix(prefix + '_')]}", "", table, ""]
    parts.append(provenance(res))
    return "\n".join(parts) + "\n"


def plot(res: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """``tradeoff.png`` (old vs new test accuracy, per-seed dots), ``curves.png``
    (validation accuracy along fine-tuning), ``diagnostics.png`` (PROFIT's conflict rate,
    cos(g, Δ) and removed fraction along training, where logged) and ``pretrain.png``."""
    from experiments.common import plotting

    rows = {k: v for k, v in res["rows"].items() if not k.startswith("ablation:")}
    paths = [
        plotting.plot_seed_tradeoff(
            rows,
            out_dir / "tradeoff.png",
            xlabel="old-task test accuracy (%)",
            ylabel="new-task test accuracy (%)",
            title=res["name"],
            scale=100.0,
            reference_x=res["pretrained"]["old_test_acc"],
        ),
        plotting.plot_row_curves(
            rows,
            out_dir / "curves.png",
            panels=[
                ("val_old", "old-task validation accuracy (%)"),
                ("val_new", "new-task validation accuracy (%)"),
            ],
            title=f"{res['name']}: validation accuracy along fine-tuning (mean over seeds)",
            scale=100.0,
        ),
    ]
    profit = {k: v for k, v in rows.items() if "train_conflict" in v["runs"][0]["curve"][-1]}
    if profit:
        paths.append(
            plotting.plot_row_curves(
                profit,
                out_dir / "diagnostics.png",
                panels=[
                    ("train_conflict", "conflict rate"),
                    ("train_cos_g_delta", "cos(g, Δ)"),
                    ("train_removed_frac", "removed fraction of ‖g‖"),
                ],
                title=f"{res['name']}: PROFIT's diagnostics (mean over calls and seeds)",
            )
        )
    hist = res["pretrained"]["history"]
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=110)
    ax.plot([h["step"] for h in hist], [100 * h["old_val_acc"] for h in hist], "o-")
    ax.set_xlabel("pretraining step")
    ax.set_ylabel("old-task validation accuracy (%)")
    ax.set_title("pretraining (AdamW): convergence")
    fig.tight_layout()
    paths.append(out_dir / "pretrain.png")
    fig.savefig(paths[-1])
    plt.close(fig)
    return paths
