"""Hyperparameter selection for the 2D toy on *validation* data of separate tuning seeds.

For every method, every combination in :data:`experiments.toy2d.config.SWEEP_GRIDS` is
fine-tuned from models pretrained on the tuning seeds (disjoint from the reporting seeds), and the
combination with the lowest mean **new-task validation MSE** is selected: the fine-tuning objective,
and the only data a practitioner fine-tuning on new data would have. Old-task data and all test
splits are not used for selection. The selected values are copied by hand into
``DEFAULT_METHODS`` in ``config.py`` (and the sweep output is committed next to the results).

Usage::

    python -m experiments.toy2d.sweep [--config=experiments/toy2d/config.py[:quick]]
        [--config.tuning_seeds="(100,101)"] [--methods=adam,profit,...] [--out=DIR] [--noprogress]
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np
from tqdm.auto import tqdm

from experiments.common import results
from experiments.toy2d import plots, train
from experiments.toy2d.config import SWEEP_GRIDS
from experiments.toy2d.data import make_data
from experiments.toy2d.main import MakeMethod, _default_make_method, _masks
from experiments.toy2d.model import MLP


def combinations(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """All hyperparameter dicts of a grid ``{name: [values]}`` (sorted by name)."""
    keys = sorted(grid)
    return [
        dict(zip(keys, vals, strict=True)) for vals in itertools.product(*(grid[k] for k in keys))
    ]


def sweep(
    cfg: ml_collections.ConfigDict,
    grids: Mapping[str, Mapping[str, Sequence[Any]]],
    seeds: Sequence[int],
    *,
    make_method: MakeMethod | None = None,
    masks_fn: Callable[[Any], dict[str, Any]] = _masks,
    progress: bool = True,
) -> dict[str, Any]:
    """Runs the grids; returns every trial and the selection per method.

    ``make_method`` and ``masks_fn`` are as in :func:`experiments.toy2d.main.run`.
    """
    make_method = make_method or _default_make_method()
    model = MLP(cfg.model.hidden)
    trials: dict[str, list[dict[str, Any]]] = {
        n: [{"hparams": h, "old_val": [], "new_val": []} for h in combinations(g)]
        for n, g in grids.items()
    }
    for seed in seeds:
        data = make_data(cfg.data, seed)
        params, _ = train.pretrain(model, data, cfg.pretrain, seed, progress=progress)
        masks = masks_fn(params)
        jobs = [(n, t) for n, ts in trials.items() for t in ts]
        for name, trial in tqdm(jobs, desc=f"sweep seed {seed}", disable=not progress):
            method = make_method(name, params, **masks, **trial["hparams"])
            steps = -(-cfg.finetune.steps // method.period) * method.period
            order = train.finetune_order(data, cfg.finetune, steps, seed)
            res = train.finetune(
                method, model, params, data, order, steps, progress=False, evaluate_test=False
            )
            trial["old_val"].append(res.val["old"])
            trial["new_val"].append(res.val["new"])
    selected = {}
    for name, ts in trials.items():
        for t in ts:
            t["old_val_mean"] = float(np.mean(t["old_val"]))
            t["new_val_mean"] = float(np.mean(t["new_val"]))
        score = lambda t: t["new_val_mean"] if np.isfinite(t["new_val_mean"]) else math.inf
        selected[name] = min(ts, key=score)["hparams"]
    return {
        "seeds": list(seeds),
        "criterion": "min mean new-task validation MSE",
        "trials": trials,
        "selected": selected,
    }


def format_sweep(result: Mapping[str, Any]) -> str:
    """Markdown table of every trial, the selected one marked."""
    lines = [
        "| method | hyperparameters | old val MSE | new val MSE | selected |",
        "|---|---|---|---|---|",
    ]
    for name, ts in result["trials"].items():
        for t in ts:
            sel = "**yes**" if t["hparams"] == result["selected"][name] else ""
            hp = ", ".join(
                f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in t["hparams"].items()
            )
            lines.append(
                f"| {name} | {hp} | {t['old_val_mean']:.4g} | {t['new_val_mean']:.4g} | {sel} |"
            )
    return "\n".join(lines)


def write(result: Mapping[str, Any], out: Path) -> str:
    """Writes ``sweep.json``, ``sweep.md`` and ``sweep.png`` to ``out``; returns the table."""
    results.write_json(out / "sweep.json", result)
    table = format_sweep(result)
    results.write_text_atomic(
        out / "sweep.md",
        f"# 2D toy hyperparameter sweep\n\nTuning seeds {list(result['seeds'])}; criterion: "
        f"{result['criterion']}.\n\n{table}\n",
    )
    plots.plot_sweep(result, out / "sweep.png")
    return table


def cli() -> None:
    """``python -m experiments.toy2d.sweep``: flags (defined here, not on import), the sweep."""
    from absl import app, flags
    from ml_collections import config_flags

    config = config_flags.DEFINE_config_file("config", "experiments/toy2d/config.py")
    methods = flags.DEFINE_list("methods", list(SWEEP_GRIDS), "methods whose grid is swept")
    out = flags.DEFINE_string("out", "experiments/results/toy2d/sweep", "output directory")
    progress = flags.DEFINE_bool("progress", True, "progress bars")

    def main(argv: Sequence[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"Too many command-line arguments: {argv[1:]}")
        cfg = config.value
        grids = {n: SWEEP_GRIDS[n] for n in methods.value}
        result = sweep(cfg, grids, cfg.tuning_seeds, progress=progress.value)
        result["config"] = cfg.to_dict()
        print(write(result, Path(out.value)))
        print("\nselected:", json.dumps(result["selected"], indent=1))

    app.run(main)


if __name__ == "__main__":
    cli()
