"""The paper toy's own tables (beside the paper's Table 1, PROFIT's λ ratio), its page and
figures, from its ``results.json`` only; the tables every suite has are
:mod:`experiments.common.tables`'.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiments.common import results, tables
from experiments.paper_toy.suite import paper_ratio_choice

#: The paper's Table 1 (old / new test error; standard error <= 0.01), copied exactly.
PAPER_TABLE_1 = {
    "pretrained": (0.0054, 1.907),
    "full fine-tuning": (0.705, 0.504),
    "head fine-tuning": (0.110, 0.572),
    "PROFIT": (0.046, 0.501),
}
#: The budget views: column title and row suffix.
VIEWS = {"grads": "", "main": "@main"}
TITLES = {
    "table1": "Beside the paper (Table 1)",
    "ratios": "PROFIT's λ ratio at the paper's learning rate",
    "tuned_grads": "Every method at its own learning rate (equal gradients)",
    "vs_best": "PROFIT against the best baseline (both budget views)",
}


def _ratio(r: Any) -> str:
    return "auto" if r is None else f"{r:g}"


def _views(res: Mapping[str, Any]) -> list[str]:
    """The budget views of the results: equal gradients, and equal main steps if run."""
    return [v for v in VIEWS if any(row["budget"] == v for row in res["rows"].values())]


def _row(res: Mapping[str, Any], label: str, view: str) -> Mapping[str, Any] | None:
    """A paper row in a budget view; a one-gradient method runs the same in both."""
    rows = res["rows"]
    return rows.get(label + VIEWS[view], rows.get(label))


def _chosen_ratio(res: Mapping[str, Any]) -> Any:
    return paper_ratio_choice(res["selection"], res["config"]["finetune"]["paper_learning_rate"])


def _paper_keys(res: Mapping[str, Any]) -> dict[str, str]:
    return {
        "full": "paper:full_ft",
        "head": "paper:head_only",
        "profit": f"paper:profit_rmsprop@{_ratio(_chosen_ratio(res))}",
    }


def _mse(summary: Mapping[str, Any], key: str) -> str:
    return tables.pm(summary[f"test_{key}_mean"], summary[f"test_{key}_se"])


def paper_table(res: Mapping[str, Any]) -> str:
    """Table 1 beside ours: the paper's rows at the paper's lr, in each budget view."""
    views = _views(res)
    n = len(res["pretrained"])
    header = ["row", "paper: old / new", *(f"ours, {v}: old / new" for v in views)]
    keys = _paper_keys(res)
    names = {"full fine-tuning": "full", "head fine-tuning": "head", "PROFIT": "profit"}
    pre = list(res["pretrained"].values())
    pretrained = [
        tables.pm(*results.mean_se([p["test"][k] for p in pre]), digits=4) for k in ("old", "new")
    ]
    rows = []
    for name, (p_old, p_new) in PAPER_TABLE_1.items():
        cells = [name, f"{p_old} / {p_new}"]
        for view in views:
            if name == "pretrained":
                cells.append(" / ".join(pretrained))
                continue
            row = _row(res, keys[names[name]], view)
            cells.append(
                " / ".join(_mse(row["summary"], k) for k in ("old", "new")) if row else "–"
            )
        rows.append(cells)
    tuned = bool(res["selection"])
    ratio = ", ".join(f"{v} {_ratio(_chosen_ratio(res))}" for v in views)
    note = (
        f"Test MSE on noiseless points, {res['spread']} (n = {n}). Ours: RMSProp at the "
        "paper's lr 5e-4 for every row; "
        + (
            f"PROFIT's λ_main/λ_ref chosen on validation at that lr (ratio: {ratio})."
            if tuned
            else "no tuning (demo): the PROFIT row is the automatic rule; every ratio is in "
            "the next table."
        )
    )
    return tables.table(header, rows) + "\n\n" + note + "\n\n" + ordering_sentence(res)


def ordering_sentence(res: Mapping[str, Any]) -> str:
    """Whether the paper's Table 1 ordering reproduces, per budget view, from the numbers.

    The paper: old error PROFIT < head only < full fine-tuning; new error PROFIT <= full
    fine-tuning < head only.
    """
    parts = []
    keys = _paper_keys(res)
    for view in _views(res):
        found = {n: _row(res, k, view) for n, k in keys.items()}
        if any(r is None for r in found.values()):
            continue
        m = {n: r["summary"] for n, r in found.items()}
        old = [m[n]["test_old_mean"] for n in ("profit", "head", "full")]
        new = [m[n]["test_new_mean"] for n in ("profit", "full", "head")]
        said = {True: "reproduces", False: "does not reproduce"}
        parts.append(
            f"{view}: old-square order PROFIT < head only < full fine-tuning "
            f"{said[old[0] < old[1] < old[2]]}, new-square order "
            f"PROFIT ≤ full fine-tuning < head only {said[new[0] <= new[1] < new[2]]}"
        )
    return "Paper's ordering (from the means above): " + "; ".join(parts) + "."


def ratio_table(res: Mapping[str, Any]) -> str:
    """PROFIT(RMSProp) at the paper's lr for every λ ratio (the toy's Table 9 analogue)."""
    views = _views(res)
    header = ["λ_main / λ_ref", *(f"{v}: old / new (test)" for v in views)]
    keys = [k for k, r in res["rows"].items() if k.startswith("paper:profit_rmsprop@")]
    keys = [k for k in keys if res["rows"][k]["budget"] == "grads"]
    rows = []
    for key in keys:
        cells = [key.split("@")[1]]
        for view in views:
            row = _row(res, key, view)
            cells.append(" / ".join(_mse(row["summary"], k) for k in ("old", "new")))
        rows.append(cells)
    return tables.table(header, rows) + f"\n\nRMSProp lr 5e-4; {res['spread']}."


def blocks(res: Mapping[str, Any], prefix: str = "paper_toy") -> dict[str, str]:
    """Every Markdown table of the suite, by name."""
    out = {f"{prefix}_table1": paper_table(res), f"{prefix}_ratios": ratio_table(res)}
    if res["selection"]:
        out[f"{prefix}_tuned_grads"] = tables.tuned_table(res)
    if res.get("comparisons"):
        out[f"{prefix}_vs_best"] = tables.comparison_table(res)
    return out


def page(res: Mapping[str, Any], prefix: str = "paper_toy") -> str:
    titles = {f"{prefix}_{k}": v for k, v in TITLES.items()}
    return tables.markdown(res, blocks(res, prefix), titles)


def plot(res: Mapping[str, Any], out_dir: Path) -> list[Path]:
    return tables.plot(res, out_dir, log=True)
