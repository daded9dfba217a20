"""A recipe suite's own tables (beside the paper's Table 2, the ablations, every method
against plain continued training), its page and figures, from its ``results.json`` only;
the tables every suite has are :mod:`experiments.common.tables`'.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiments.common import protocol, tables

#: The paper's Table 2, CIFAR-10 → CIFAR-100 (old / new test accuracy, %), copied exactly,
#: and the pretrained CIFAR-10 accuracy: ViT-Tiny (beside the MLP and the ViT-mini) and
#: ResNet-18 (beside the ResNet-mini).
PAPER_TABLE_2 = {
    "ViT-Tiny": (
        {
            "sgd": (53.63, 61.98),
            "adam": (56.00, 58.99),
            "lookahead": (55.64, 61.35),
            "adan": (53.04, 61.62),
            "profit": (58.53, 62.20),
        },
        82.38,
    ),
    "ResNet-18": (
        {
            "sgd": (24.49, 74.59),
            "adam": (34.64, 73.11),
            "lookahead": (26.10, 73.82),
            "adan": (35.17, 72.70),
            "profit": (35.26, 74.70),
        },
        91.06,
    ),
}


def paper_model(res: Mapping[str, Any]) -> str:
    """The paper's model a suite's class split stands beside (its Table 2)."""
    return "ResNet-18" if res["config"]["model"]["kind"] == "resnet" else "ViT-Tiny"


def _acc_cells(res: Mapping[str, Any], s: Mapping[str, Any], keys=("old", "new", "mean")):
    return tables.cells(res, s, keys)


def paper_table(res: Mapping[str, Any]) -> str:
    model = paper_model(res)
    paper, pretrained = PAPER_TABLE_2[model]
    header = ["method", f"paper {model}: old / new (%)", "ours: old (%)", "ours: new (%)"]
    rows = [
        [
            "pretrained",
            f"{pretrained} / –",
            tables.value(res, res["pretrained"]["old_test_acc"]),
            "–",
        ]
    ]
    for label, (p_old, p_new) in paper.items():
        row = res["rows"].get(label)
        cells = _acc_cells(res, row["summary"], ("old", "new")) if row else ["–", "–"]
        rows.append([f"`{label}`", f"{p_old:.2f} / {p_new:.2f}", *cells])
    n = len(res["config"]["seeds"])
    return tables.table(header, rows) + (
        f"\n\nTest accuracy, {res['spread']} (n = {n}); every method at its own learning rate "
        "(validation), equal gradient evaluations. Paper: CIFAR-10 → CIFAR-100, Table 2.\n\n"
        + ordering_sentence(res)
    )


def ordering_sentence(res: Mapping[str, Any]) -> str:
    """Whether the paper's claim (PROFIT first on old and on new accuracy among its five
    methods) reproduces, from the means."""
    names = [k for k in PAPER_TABLE_2[paper_model(res)][0] if k in res["rows"]]
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


def ablation_table(res: Mapping[str, Any], kind: str) -> str:
    header = [kind.replace("ratio", "λ_main / λ_ref"), "old (%)", "new (%)", "mean (%)"]
    rows = []
    for label, row in res["rows"].items():
        if label.startswith(f"ablation:{kind}="):
            rows.append([label.split("=")[1], *_acc_cells(res, row["summary"])])
    base = res["selection"][res["config"]["ablation"]["method"]]["hparams"]
    paper = {
        "ratio": "Paper (Table 9): best ratio 10 (ResNet-18), 1000 (ViT-Tiny, old accuracy), "
        "100 (ViT-Small); larger λ_ref promotes new-task accuracy, smaller mitigates forgetting.",
        "n_ref": "Paper (Table 8): larger n_ref keeps the old task better and learns the new "
        "one less.",
    }[kind]
    return tables.table(header, rows) + (
        f"\n\nPROFIT at its selected point ({protocol.hparams_text(base)}) with one setting "
        "changed; test accuracy, "
        f"{res['spread']}. {paper}"
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
            cells.append(f"{tables.interval(res, d)} {w}")
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
    return tables.table(header, rows) + (
        f"\n\nEach method minus plain continued {refs_text} (each at its own "
        "validation-chosen learning rate), paired over the reporting seeds, mean test accuracy "
        "in points, mean [95% t-interval]; better / worse when the interval excludes 0, "
        f"{len(labels)} comparisons per column with no correction for multiplicity (about one "
        "in twenty excludes 0 by chance alone). Rows ending `@main` ran as many main steps as "
        "the others ran gradient evaluations (PROFIT and SAM take two gradients per main step, "
        "so these rows used twice the gradients). " + " ".join(counts)
    )


#: PROFIT's batch-statistics arms (the ResNet suites): mode -> the row that ran it.
BATCH_STATS_ROWS = {
    "every_call": "profit",
    "at_model": "ablation:batch_stats=at_model",
    "one_call": "ablation:batch_stats=one_call",
}
BATCH_STATS_TEXT = {
    "every_call": "alternating, statistics moved on every call",
    "at_model": "alternating, statistics moved only at the model",
    "one_call": "one-call mode, probes on the running statistics",
}


def batch_stats_table(res: Mapping[str, Any]) -> str:
    """PROFIT's batch-statistics arms at its selected point: each arm's test accuracy and
    its difference from the best baseline, then the arms' paired differences."""
    arms = {m: r for m, r in BATCH_STATS_ROWS.items() if r in res["rows"]}
    base = res["best_baseline"]
    vs_base = protocol.paired_to(res["rows"], base, list(arms.values()))
    header = ["arm", "old (%)", "new (%)", "mean (%)", f"Δ mean vs `{base}` (pts)"]
    rows = []
    for mode, row in arms.items():
        d = vs_base[row]["mean"]
        rows.append(
            [
                f"`{mode}`: {BATCH_STATS_TEXT[mode]}",
                *_acc_cells(res, res["rows"][row]["summary"]),
                f"{tables.interval(res, d)} {tables.word(res, d)}",
            ]
        )
    pairs = [(a, b) for i, b in enumerate(arms) for a in list(arms)[i + 1 :]]
    diff_rows = []
    for a, b in pairs:
        d = protocol.paired_to(res["rows"], arms[b], [arms[a]])[arms[a]]
        cells = [tables.interval(res, d[k]) for k in protocol.METRICS]
        diff_rows.append([f"`{a}` − `{b}`", *cells, tables.word(res, d["mean"])])
    base_hp = res["selection"][res["config"]["batch_stats"]["method"]]["hparams"]
    return (
        tables.table(header, rows)
        + "\n\n"
        + tables.table(["arms", "Δ old (pts)", "Δ new (pts)", "Δ mean (pts)", "verdict"], diff_rows)
        + (
            f"\n\nPROFIT at its selected point ({protocol.hparams_text(base_hp)}), the batch-norm "
            "statistics treated three ways; test accuracy, "
            f"{res['spread']}; differences paired over the reporting seeds, mean [95% "
            "t-interval], better / worse when the interval excludes 0. Every arm evaluates "
            "in eval mode, on the running statistics it collected; equal gradient evaluations."
        )
    )


def blocks(res: Mapping[str, Any], prefix: str) -> dict[str, str]:
    """The suite's tables by name: beside the paper (class split only), tuned, ablations
    (when run), the batch-statistics arms (when run), PROFIT against the best baseline,
    and on maintenance every method against plain continued Adam/AdamW."""
    out = {}
    if res["config"]["task"]["kind"] == "class_split":
        out[f"{prefix}_table2"] = paper_table(res)
    out[f"{prefix}_tuned"] = tables.tuned_table(res)
    for kind in ("ratio", "n_ref"):
        if any(k.startswith(f"ablation:{kind}=") for k in res["rows"]):
            out[f"{prefix}_{kind}"] = ablation_table(res, kind)
    if any(r in res["rows"] for r in list(BATCH_STATS_ROWS.values())[1:]):
        out[f"{prefix}_batch_stats"] = batch_stats_table(res)
    out[f"{prefix}_vs_best"] = tables.comparison_table(res)
    if res["config"]["task"]["kind"] == "maintenance" and any(r in res["rows"] for r in CONTINUED):
        out[f"{prefix}_vs_continued"] = continued_table(res)
    return out


TITLES = {
    "table2": "Beside the paper (Table 2, {model})",
    "tuned": tables.TITLES["tuned"],
    "ratio": "Ablation: λ ratio (Table 9)",
    "n_ref": "Ablation: n_ref (Table 8)",
    "batch_stats": "PROFIT and batch-norm statistics",
    "vs_best": tables.TITLES["vs_best"],
    "vs_continued": "Every method against plain continued training",
}


def page(res: Mapping[str, Any], prefix: str) -> str:
    """The suite's ``results.md``: the pretraining curve, every table, the provenance."""
    pre = res["pretrained"]
    hist = pre["history"]
    preamble = [
        f"Pretrained: old-task validation accuracy {100 * pre['old_val_acc']:.2f}% "
        f"(curve: " + ", ".join(f"{h['step']}: {100 * h['old_val_acc']:.1f}" for h in hist) + "); "
        f"test {100 * pre['old_test_acc']:.2f}%.",
        "",
    ]
    titles = {f"{prefix}_{k}": v.format(model=paper_model(res)) for k, v in TITLES.items()}
    return tables.markdown(res, blocks(res, prefix), titles, preamble)


def plot(res: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """The figures of :func:`experiments.common.tables.plot` and ``pretrain.png`` (old-task
    validation accuracy along pretraining: the convergence check)."""
    from experiments.common.plotting import plot_pretraining

    paths = tables.plot(res, out_dir, reference_x=res["pretrained"]["old_test_acc"])
    hist = res["pretrained"]["history"]
    paths.append(
        plot_pretraining(
            hist,
            "old_val_acc",
            out_dir / "pretrain.png",
            ylabel="old-task validation accuracy (%)",
            scale=100.0,
        )
    )
    return paths
