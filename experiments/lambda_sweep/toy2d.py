"""λ_ref sensitivity sweep on the 2D regression toy (``experiments/toy2d``).

For both PROFIT entries of ``experiments.toy2d.config.DEFAULT_METHODS`` ("profit": Adam 3e-3,
"profit_sgd": SGD-momentum 3e-3): fixed SGD reference learning rates λ_ref = λ_main × ratio and the
automatic reference step at several ``ref_scale`` values, all from the same pretrained model per
seed, the same mini-batches and the same number of update calls (the toy's 2400). Metric: MSE on
noiseless points (lower is better), validation split for choices, test split for reporting.

Usage::

    python -m experiments.lambda_sweep.toy2d [--quick] [--seeds 0 1 2 3 4] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from experiments.common import results
from experiments.lambda_sweep import grid, precision, report, runs, stats
from experiments.toy2d import train
from experiments.toy2d.config import DEFAULT_METHODS, get_config
from experiments.toy2d.data import make_data
from experiments.toy2d.model import MLP, mse

TASK = "toy2d"
METRIC = stats.Metric("MSE", lower_is_better=True)
RATIOS = (1.0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7)
REF_SCALES = (0.0003, 0.001, 0.003, 0.01, 0.03, 0.1)
QUICK_RATIOS = (1e-2, 1e-4)
QUICK_REF_SCALES = (0.1,)
PROFIT_METHODS = ("profit", "profit_sgd")


def projection_stats(count, delta, grad, conflict, removed) -> dict[str, float]:
    """Over the main calls after the first cycle (the automatic rule has Δ = 0 in the first):

    * ``lambda_equiv``: median ‖Δ‖ / ‖g‖, the SGD λ_ref that would give the same displacement
      for a gradient of the main gradient's size;
    * ``conflict_rate``: fraction of main calls whose gradient was projected;
    * ``removed_frac``: mean ‖removed component‖ / ‖g‖ (how much of g the projection took away).
    """
    main = (count == 0) & (grad > 0) & np.isfinite(grad)
    first = int(np.argmax(count == 0))
    main[: first + 1] = False
    if not main.any():
        return {"lambda_equiv": None, "conflict_rate": None, "removed_frac": None}
    return {
        "lambda_equiv": float(np.median(delta[main] / grad[main])),
        "conflict_rate": float(np.mean(conflict[main])),
        "removed_frac": float(np.mean(removed[main] / grad[main])),
    }


def make_runner(cfg, methods, seeds, progress: bool = False, dtype: Any = None):
    """Pretrains once per seed and returns ``run_fn(point, seed)`` for :func:`sweep.run_sweep`.

    ``dtype`` (e.g. ``jnp.float64``, with ``jax_enable_x64`` on): the pretrained float32
    parameters are cast to it before fine-tuning, so the whole fine-tuning (optimizer
    states, Δ, the model's computation) runs in that precision from the same models.
    """
    from profit_optax import diagnostics, masks
    from profit_optax.registry import make_method

    model = MLP(cfg.model.hidden)
    seeds = list(seeds)
    data = {s: make_data(cfg.data, s) for s in seeds}
    pre = {}
    for s in seeds:
        t0 = time.perf_counter()
        pre[s] = train.pretrain(model, data[s], cfg.pretrain, s, progress=progress)[0]
        pre[s] = precision.cast_params(pre[s], dtype)
        print(f"pretrained seed {s} in {time.perf_counter() - t0:.1f}s", flush=True)
    compiled: dict[grid.Point, Any] = {}

    def build(point: grid.Point):
        params = pre[seeds[0]]
        kw = {"head_mask": masks.head_mask(params), "embed_mask": masks.embedding_mask(params)}
        method = make_method(point.method, params, **kw, **point.hparams(methods[point.method]))
        steps = -(-cfg.finetune.steps // method.period) * method.period

        def step(carry, idx, x, y):
            stored, state = carry
            grads = jax.grad(mse, argnums=1)(model, method.grad_params(stored), x[idx], y[idx])
            updates, state = method.tx.update(grads, state, stored)
            d = diagnostics(state)
            out = (state.count, d["delta_norm"], d["grad_norm"], d["conflict"], d["removed_norm"])
            return (method.apply(stored, updates), state), out

        @jax.jit
        def run(params, x, y, order):
            stored = method.init_params(params)
            carry = (stored, method.tx.init(stored))
            carry, ys = jax.lax.scan(lambda c, i: step(c, i, x, y), carry, order)
            return method.eval_params(*carry), ys

        return steps, run

    def run_fn(point: grid.Point, seed: int) -> dict[str, Any]:
        if point not in compiled:
            compiled[point] = build(point)
        steps, run = compiled[point]
        d = data[seed]
        order = train.finetune_order(d, cfg.finetune, steps, seed)
        t0 = time.perf_counter()
        final, diag = run(
            pre[seed], jnp.asarray(d.new.train.x), jnp.asarray(d.new.train.y), jnp.asarray(order)
        )
        final = jax.block_until_ready(final)
        elapsed = time.perf_counter() - t0
        val = train.evaluate(model, final, d.old.val, d.new.val)
        test = train.evaluate(model, final, d.old.test, d.new.test)
        return {
            "old_val": val["old"],
            "new_val": val["new"],
            "old_test": test["old"],
            "new_test": test["new"],
            **projection_stats(*map(np.asarray, diag)),
            "steps": steps,
            "time_s": elapsed,
        }

    def reference() -> dict[str, float]:
        rows = [train.evaluate(model, pre[s], data[s].old.test, data[s].new.test) for s in seeds]
        return stats.reference_stats([{"old_test": r["old"], "new_test": r["new"]} for r in rows])

    run_fn.reference = reference
    return run_fn


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """CLI entry point; returns the summary."""
    p = argparse.ArgumentParser(
        prog="python -m experiments.lambda_sweep.toy2d", description=__doc__
    )
    p.add_argument("--quick", action="store_true", help="tiny config and grid (seconds)")
    p.add_argument(
        "--seeds", type=int, nargs="+", default=None, help="default 0 1 2 3 4 (quick: 0)"
    )
    p.add_argument("--methods", nargs="+", default=list(PROFIT_METHODS))
    p.add_argument("--ratios", type=float, nargs="+", default=None, help="λ_ref / λ_main grid")
    p.add_argument("--ref-scales", type=float, nargs="+", default=None)
    p.add_argument("--out", type=Path, default=Path("experiments/results/lambda_sweep"))
    precision.add_x64_argument(p)
    args = p.parse_args(argv)
    dtype = precision.fine_tune_dtype(args.x64)
    cfg = get_config("quick" if args.quick else "full")
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2, 3, 4])
    cfg.seeds = tuple(seeds)
    ratios = args.ratios or (QUICK_RATIOS if args.quick else RATIOS)
    scales = args.ref_scales or (QUICK_REF_SCALES if args.quick else REF_SCALES)
    methods = {n: dict(DEFAULT_METHODS[n]) for n in args.methods}
    points = grid.make_points(methods, ratios, scales)
    t0 = time.perf_counter()
    run_fn = make_runner(cfg, methods, seeds, dtype=dtype)
    records = runs.run_sweep(points, seeds, run_fn)
    total = time.perf_counter() - t0
    summary = stats.summarize(
        records, METRIC, {n: float(m["learning_rate"]) for n, m in methods.items()}
    )
    argv = sys.argv[1:] if argv is None else list(argv)
    title = "2D toy" + (" (quick)" if args.quick else "") + (", float64" if args.x64 else "")
    meta = {
        "seeds": seeds,
        "methods": {
            n: {k: v for k, v in m.items() if k != "ref_learning_rate"} for n, m in methods.items()
        },
        "ratios": list(ratios),
        "ref_scales": list(scales),
        "finetune_update_calls": records[0]["steps"],
        "total_wall_time_s": round(total, 1),
        "config": cfg.to_dict(),
        "environment": results.environment(
            " ".join(["python -m experiments.lambda_sweep.toy2d", *argv])
        ),
    }
    paths = report.write_outputs(
        args.out,
        task=grid.variant(TASK, x64=args.x64, quick=args.quick),
        title=title,
        metric=METRIC,
        records=records,
        summary=summary,
        meta=meta,
        reference=run_fn.reference(),
    )
    print(paths["md"].read_text())
    print(f"wrote {', '.join(map(str, paths.values()))} in {total:.1f}s")
    return summary


if __name__ == "__main__":
    main()
