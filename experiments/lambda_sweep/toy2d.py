"""λ_ref sensitivity sweep on the 2D regression toy (``experiments/toy2d``).

For both PROFIT entries of ``experiments.toy2d.config.DEFAULT_METHODS`` ("profit": Adam 3e-3,
"profit_sgd": SGD-momentum 3e-3): fixed SGD reference learning rates λ_ref = λ_main × ratio and the
automatic reference step at several ``ref_scale`` values, all from the same pretrained model per
seed, the same mini-batches and the same number of update calls (the toy's 2400). Metric: MSE on
noiseless points (lower is better), validation split for choices, test split for reporting.

Usage::

    python -m experiments.lambda_sweep.toy2d \\
        [--config=experiments/lambda_sweep/configs/toy2d.py[:quick]]
        [--config.seeds="(0,1,2,3,4)"] [--config.x64=True] [--out=DIR]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.common import results
from experiments.lambda_sweep import grid, precision, report, runs, stats
from experiments.toy2d import train
from experiments.toy2d.data import make_data
from experiments.toy2d.model import MLP, mse

TASK = "toy2d"
METRIC = stats.Metric("MSE", lower_is_better=True)


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
    from experiments.methods import make_method
    from profit_optax import diagnostics, masks

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


def run(config: ml_collections.ConfigDict, out: Path, *, command: str) -> dict[str, Any]:
    """Runs the sweep of ``config`` (``configs/toy2d.py``), writes ``<variant>_sweep.*`` to
    ``out``; returns the summary. ``command`` is recorded in the environment."""
    dtype = precision.fine_tune_dtype(config.x64)
    cfg = config.toy.copy_and_resolve_references()
    cfg.seeds = tuple(config.seeds)
    seeds = list(config.seeds)
    methods = {n: cfg.methods[n].to_dict() for n in config.methods}
    points = grid.make_points(methods, config.ratios, config.ref_scales)
    t0 = time.perf_counter()
    run_fn = make_runner(cfg, methods, seeds, dtype=dtype)
    records = runs.run_sweep(points, seeds, run_fn)
    total = time.perf_counter() - t0
    summary = stats.summarize(
        records, METRIC, {n: float(m["learning_rate"]) for n, m in methods.items()}
    )
    title = "2D toy" + (" (quick)" if config.quick else "") + (", float64" if config.x64 else "")
    meta = {
        "seeds": seeds,
        "methods": {
            n: {k: v for k, v in m.items() if k != "ref_learning_rate"} for n, m in methods.items()
        },
        "ratios": list(config.ratios),
        "ref_scales": list(config.ref_scales),
        "finetune_update_calls": records[0]["steps"],
        "total_wall_time_s": round(total, 1),
        "config": config.to_dict(),
        "environment": results.environment(command),
    }
    paths = report.write_outputs(
        out,
        task=grid.variant(TASK, x64=config.x64, quick=config.quick),
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


def cli() -> None:
    """``python -m experiments.lambda_sweep.toy2d``: flags (defined here, not on import), run."""
    from absl import app, flags
    from ml_collections import config_flags

    config = config_flags.DEFINE_config_file("config", "experiments/lambda_sweep/configs/toy2d.py")
    out = flags.DEFINE_string("out", "experiments/results/lambda_sweep", "output directory")

    def main(argv: Sequence[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"Too many command-line arguments: {argv[1:]}")
        command = " ".join(["python -m experiments.lambda_sweep.toy2d", *sys.argv[1:]])
        run(config.value, Path(out.value), command=command)

    app.run(main)


if __name__ == "__main__":
    cli()
