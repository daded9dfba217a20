"""Runs the 2D toy end to end: data, pretraining, fine-tuning with every method, reports.

Usage (``--config.<field>=value`` overrides any field of ``experiments/toy2d/config.py``)::

    python -m experiments.toy2d [--config=experiments/toy2d/config.py[:quick]]
        [--config.seeds="(0,1,2)"] [--methods=adam,profit,...] [--out=DIR] [--noprogress]
"""

from __future__ import annotations

import csv
import math
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ml_collections
from tqdm.auto import tqdm

from experiments.common import results as results_lib
from experiments.toy2d import plots, train
from experiments.toy2d.data import ToyData, make_data
from experiments.toy2d.model import MLP

MakeMethod = Callable[..., train.MethodLike]

# Methods drawn in the function plots, next to the pretrained model.
HIGHLIGHT = ("adam", "head_only", "profit")


def _default_make_method() -> MakeMethod:
    from experiments import methods as registry

    return registry.make_method


def _masks(params: Any) -> dict[str, Any]:
    from profit_optax import masks

    return {"head_mask": masks.head_mask(params), "embed_mask": masks.embedding_mask(params)}


def summarize(per_seed: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Mean and standard error over seeds (:func:`experiments.common.results.mean_se`) of
    every numeric field, per method: ``<field>_mean`` and ``<field>_se``."""
    out = {}
    for name, rows in per_seed.items():
        stats = {}
        for key in rows[0]:
            stats[f"{key}_mean"], stats[f"{key}_se"] = results_lib.mean_se([r[key] for r in rows])
        out[name] = stats
    return out


def run(
    cfg: ml_collections.ConfigDict,
    out_dir: Path,
    *,
    methods: Sequence[str] | None = None,
    make_method: MakeMethod | None = None,
    masks_fn: Callable[[Any], dict[str, Any]] = _masks,
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Runs every seed and method of ``cfg``, writes JSON/CSV/markdown/PNGs to ``out_dir``.

    Args:
      cfg: the experiment configuration.
      out_dir: output directory (created).
      methods: subset of ``cfg.methods`` to run (default: all, in ``cfg.methods`` order).
      make_method: ``make_method(name, params, *, head_mask, embed_mask, **hparams)``; defaults
        to :func:`experiments.methods.make_method`.
      masks_fn: builds the ``head_mask`` / ``embed_mask`` keyword arguments from the params.
      progress: show tqdm progress bars.
      command: the command line recorded in ``results.json`` (default: ``sys.argv``).

    Returns:
      The results dictionary that is also written to ``results.json``.
    """
    make_method = make_method or _default_make_method()
    names = list(methods) if methods is not None else list(cfg.methods)
    unknown = sorted(set(names) - set(cfg.methods))
    if unknown:
        raise ValueError(
            f"no hyperparameters in the config for {unknown}; have {list(cfg.methods)}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    model = MLP(cfg.model.hidden)

    per_seed: dict[str, list[dict[str, float]]] = {n: [] for n in ["pretrained", *names]}
    curves: dict[str, list[list[dict[str, float]]]] = {n: [] for n in names}
    hparams: dict[str, dict[str, Any]] = {}
    steps = eval_every = 0
    plot_state: dict[str, Any] = {}
    t0 = time.perf_counter()
    for seed in tqdm(cfg.seeds, desc="seeds", disable=not progress):
        data = make_data(cfg.data, seed)
        params, _ = train.pretrain(model, data, cfg.pretrain, seed, progress=progress)
        pre_test = train.evaluate(model, params, data.old.test, data.new.test)
        pre_val = train.evaluate(model, params, data.old.val, data.new.val)
        per_seed["pretrained"].append(_row(seed, pre_test, pre_val, 0.0))
        mask_kwargs = masks_fn(params)
        built = {
            n: make_method(n, params, **mask_kwargs, **cfg.methods[n].to_dict()) for n in names
        }
        period = math.lcm(*(m.period for m in built.values()))
        steps = -(-cfg.finetune.steps // period) * period
        eval_every = -(-cfg.finetune.eval_every // period) * period
        order = train.finetune_order(data, cfg.finetune, steps, seed)
        finals = {"pretrained": params}
        for n, method in built.items():
            hparams[n] = dict(getattr(method, "hparams", cfg.methods[n].to_dict()))
            res = train.finetune(method, model, params, data, order, eval_every, progress=progress)
            per_seed[n].append(_row(seed, res.test, res.val, res.wall_time))
            curves[n].append(res.curve)
            finals[n] = res.params
        if seed == cfg.seeds[0]:
            plot_state = {"data": data, "params": finals}
    total = time.perf_counter() - t0

    summary = summarize({k: [_numeric(r) for r in v] for k, v in per_seed.items()})
    results = {
        "environment": results_lib.environment(command),
        "config": cfg.to_dict(),
        "finetune_steps": steps,
        "eval_every": eval_every,
        "resolved_hparams": hparams,
        "spread": results_lib.SPREAD,
        "total_wall_time_s": total,
        "per_seed": per_seed,
        "summary": summary,
        "curves": curves,
    }
    _write(out_dir, results, model, cfg, plot_state)
    return results


def _row(seed: int, test: dict, val: dict, wall: float) -> dict[str, float]:
    return {
        "seed": seed,
        "old_test": test["old"],
        "new_test": test["new"],
        "old_val": val["old"],
        "new_val": val["new"],
        "wall_time_s": wall,
    }


def _numeric(row: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in row.items() if k != "seed"}


def format_table(summary: dict[str, dict[str, float]], *, markdown: bool) -> str:
    """The results table: old/new test MSE (mean ± standard error over seeds) and wall time."""
    header = ["method", "old-data MSE (test)", "new-data MSE (test)", "wall time / run (s)"]
    rows = [
        [
            name,
            f"{s['old_test_mean']:.4f} ± {s['old_test_se']:.4f}",
            f"{s['new_test_mean']:.4f} ± {s['new_test_se']:.4f}",
            f"{s['wall_time_s_mean']:.2f}" if name != "pretrained" else "-",
        ]
        for name, s in summary.items()
    ]
    if markdown:
        lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        lines += ["| " + " | ".join(r) + " |" for r in rows]
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True))
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows)])


def _write(
    out_dir: Path,
    results: dict[str, Any],
    model: MLP,
    cfg: ml_collections.ConfigDict,
    plot_state: dict[str, Any],
) -> None:
    results_lib.write_json(out_dir / "results.json", results)
    with open(out_dir / "results.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", "seed", "old_test", "new_test", "old_val", "new_val", "wall_time_s"])
        for name, rows in results["per_seed"].items():
            for r in rows:
                w.writerow([name, r["seed"], *(f"{r[k]:.6g}" for k in list(r)[1:])])
    md = [
        "# 2D toy results",
        "",
        f"Seeds: {list(cfg.seeds)}; fine-tuning update calls (= gradient evaluations) per "
        f"method: {results['finetune_steps']}. MSE on noiseless held-out test points, "
        f"{results_lib.SPREAD}.",
        "",
        format_table(results["summary"], markdown=True),
        "",
    ]
    results_lib.write_text_atomic(out_dir / "results.md", "\n".join(md))
    data: ToyData = plot_state["data"]
    params = plot_state["params"]
    shown = {k: params[k] for k in ["pretrained", *HIGHLIGHT] if k in params}
    plots.plot_functions(model, shown, data, cfg.data, out_dir / "functions.png", seed=cfg.seeds[0])
    plots.plot_slice(model, shown, cfg.data, out_dir / "slice.png")
    plots.plot_tradeoff(results["summary"], out_dir / "tradeoff.png")
    plots.plot_curves(results["curves"], out_dir / "curves.png")


def cli() -> None:
    """``python -m experiments.toy2d``: flags (defined here, not on import), then :func:`run`."""
    from absl import app, flags
    from ml_collections import config_flags

    config = config_flags.DEFINE_config_file("config", "experiments/toy2d/config.py")
    methods = flags.DEFINE_list("methods", None, "subset of the config's methods (default: all)")
    out = flags.DEFINE_string("out", "experiments/results/toy2d", "output directory")
    progress = flags.DEFINE_bool("progress", True, "progress bars")

    def main(argv: Sequence[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"Too many command-line arguments: {argv[1:]}")
        out_dir = Path(out.value)
        res = run(
            config.value,
            out_dir,
            methods=methods.value,
            progress=progress.value,
            command=" ".join(["python -m experiments.toy2d", *sys.argv[1:]]),
        )
        print(format_table(res["summary"], markdown=False))
        print(
            f"\nwrote {out_dir}/results.{{json,csv,md}} and PNGs "
            f"({res['total_wall_time_s']:.1f} s total)"
        )

    app.run(main)
