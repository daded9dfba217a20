"""Hyperparameter selection for the 2D toy on *validation* data of separate tuning seeds.

For every method, every combination in :data:`experiments.toy2d.config.SWEEP_GRIDS` is
fine-tuned from models pretrained on the tuning seeds (disjoint from the reporting seeds), and the
combination with the lowest mean **new-task validation MSE** is selected: the fine-tuning objective,
and the only data a practitioner fine-tuning on new data would have. Old-task data and all test
splits are not used for selection. The selected values are copied by hand into
``DEFAULT_METHODS`` in ``config.py`` (and the sweep output is committed next to the results).

Usage::

    python -m experiments.toy2d.sweep [--quick] [--seeds 100 101] [--methods ...] [--out DIR]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from experiments.toy2d import plots, train
from experiments.toy2d.config import SWEEP_GRIDS, SWEEP_SEEDS, Config, get_config, to_dict
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
    cfg: Config,
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


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """CLI entry point."""
    p = argparse.ArgumentParser(prog="python -m experiments.toy2d.sweep", description=__doc__)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--seeds", type=int, nargs="+", default=list(SWEEP_SEEDS))
    p.add_argument("--methods", nargs="+", default=list(SWEEP_GRIDS))
    p.add_argument("--out", type=Path, default=Path("experiments/results/toy2d/sweep"))
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    cfg = get_config(quick=args.quick)
    grids = {n: SWEEP_GRIDS[n] for n in args.methods}
    result = sweep(cfg, grids, args.seeds, progress=not args.no_progress)
    result["config"] = to_dict(cfg)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.json").write_text(json.dumps(result, indent=1))
    table = format_sweep(result)
    (args.out / "sweep.md").write_text(
        f"# 2D toy hyperparameter sweep\n\nTuning seeds {args.seeds}; criterion: "
        f"{result['criterion']}.\n\n{table}\n"
    )
    plots.plot_sweep(result, args.out / "sweep.png")
    print(table)
    print("\nselected:", json.dumps(result["selected"], indent=1))
    return result


if __name__ == "__main__":
    main()
