"""The paper toy's protocol: pretrain, tune every method on validation, report on test.

Phases (each a batch of cached, shardable jobs, see :mod:`experiments.common.protocol`):

1. **Pretrain** one model per seed (tuning and reporting seeds) with RMSProp.
2. **Tune** every method of ``config.methods`` per budget convention: its grid on
   the tuning seeds' validation splits, scored by the mean of old and new
   validation MSE; a best learning rate at the grid's edge widens the grid.
3. **Report** each method at its selected point on the reporting seeds (test
   read once, at the end of each run), plus the paper's rows exactly (RMSProp at
   the paper's lr 5e-4; PROFIT at every λ ratio, the ratio chosen on validation).
4. **Compare** every PROFIT row with the best baseline (the non-PROFIT method
   with the best validation score): paired differences over reporting seeds.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import ml_collections
import numpy as np
import optax

from experiments.common import protocol, results
from experiments.paper_toy.data import make_data
from experiments.paper_toy.model import MLP
from experiments.toy2d import train
from experiments.toy2d.data import ToyData, batch_indices

#: Part of every job's configuration: bump it when a job's meaning changes.
PROTOCOL = "paper_toy/v1"
PAPER_ROWS = ("full_ft", "head_only", "profit_rmsprop")


def _masks(params: Any) -> dict[str, Any]:
    from profit_optax import masks

    return {"head_mask": masks.head_mask(params), "embed_mask": masks.embedding_mask(params)}


@dataclasses.dataclass(eq=False)  # hashed by identity: its methods are lru-cached
class Suite:
    """One configured suite: its cache, shard and the per-seed data and models."""

    cfg: ml_collections.ConfigDict
    runner: protocol.Runner
    progress: bool = False

    def __post_init__(self) -> None:
        self.model = MLP(tuple(self.cfg.model.hidden), self.cfg.model.activation)
        self.cache = self.runner.cache

    # --- pretraining -----------------------------------------------------------------

    def pretrain_config(self, seed: int) -> dict[str, Any]:
        c = self.cfg
        return {
            "protocol": PROTOCOL,
            "job": "pretrain",
            "data": c.data.to_dict(),
            "model": c.model.to_dict(),
            "pretrain": c.pretrain.to_dict(),
            "seed": seed,
        }

    @functools.lru_cache(maxsize=8)  # noqa: B019 (one Suite per process)
    def data(self, seed: int) -> ToyData:
        return make_data(self.cfg.data, seed)

    def _params_path(self, seed: int) -> Path:
        return self.cache.path(self.pretrain_config(seed)).with_suffix(".msgpack")

    def _pretrain(self, seed: int) -> dict[str, Any]:
        p = self.cfg.pretrain
        schedule = optax.exponential_decay(
            p.learning_rate, p.decay_every, p.decay_rate, staircase=True
        )
        tx = optax.rmsprop(schedule, decay=0.99, eps=1e-8, eps_in_sqrt=False)  # PyTorch's
        data = self.data(seed)
        start = time.perf_counter()
        params = train.train_from_scratch(
            self.model, data, tx, p.steps, p.batch_size, seed, progress=self.progress
        )
        params = jax.block_until_ready(params)
        elapsed = time.perf_counter() - start
        results.write_text_atomic(self._params_path(seed), flax.serialization.to_bytes(params))
        return {
            "val": train.evaluate(self.model, params, data.old.val, data.new.val),
            "test": train.evaluate(self.model, params, data.old.test, data.new.test),
            "train_time_s": elapsed,
        }

    @functools.lru_cache(maxsize=8)  # noqa: B019
    def pretrained(self, seed: int) -> Any:
        """The pretrained parameters of ``seed``.

        Only the small JSON records of a cache are committed; the parameters are
        regenerated (pretraining is deterministic on a given machine) when missing.
        """
        path = self._params_path(seed)
        if not path.exists():
            self._pretrain(seed)
        template = train.init_params(self.model, seed)
        return flax.serialization.from_bytes(template, path.read_bytes())

    def pretrain_all(self, seeds: tuple[int, ...]) -> dict[int, dict[str, Any]]:
        jobs = [(self.pretrain_config(s), functools.partial(self._pretrain, s)) for s in seeds]
        return dict(zip(seeds, self.runner.run_all(jobs), strict=True))

    # --- fine-tuning -----------------------------------------------------------------

    def build(self, label: str, hparams: Mapping[str, Any], calls: int | None = None):
        """The registry method of ``label`` at ``hparams`` with the paper's step schedule.

        Returns ``(method, calls, schedule_steps)``; ``calls`` defaults to the
        "grads" budget.
        """
        from experiments import methods as registry

        spec = self.cfg.methods[label]
        ft = self.cfg.finetune
        params = self.pretrained_shape()
        kwargs = {**_masks(params), **spec.fixed.to_dict(), **hparams}
        probe = registry.make_method(
            spec.method, params, **{**kwargs, **self._warmup_kwargs(spec, 2, 0)}
        )
        calls = ft.budget if calls is None else calls
        steps = calls // probe.grads_per_step
        kwargs["learning_rate"] = self.schedule(hparams["learning_rate"], steps)
        kwargs.update(self._warmup_kwargs(spec, probe.period, calls))
        return registry.make_method(spec.method, params, **kwargs), calls, steps

    def schedule(self, learning_rate: float, steps: int) -> optax.Schedule:
        """The paper's step decay stretched over ``steps``: ×decay_rate, num_decays times."""
        ft = self.cfg.finetune
        every = max(1, steps // ft.num_decays)
        return optax.exponential_decay(learning_rate, every, ft.decay_rate, staircase=True)

    def _warmup_kwargs(self, spec: Any, period: int, calls: int) -> dict[str, int]:
        """A share of the run's calls (the main-steps view's longer runs warm up longer)."""
        if spec.method != "profit_warmup":
            return {}
        from experiments import methods as registry

        return {
            "warmup_steps": registry.warmup_steps(
                self.cfg.finetune.warmup_fraction, calls, period - 1
            )
        }

    @functools.lru_cache(maxsize=1)  # noqa: B019
    def pretrained_shape(self) -> Any:
        return jax.eval_shape(lambda: train.init_params(self.model, 0))

    def calls(self, label: str, convention: str) -> int:
        """Update calls of ``label`` under ``convention`` ("grads" or "main")."""
        if convention == "grads":
            return int(self.cfg.finetune.budget)
        if convention != "main":
            raise ValueError(f"unknown budget convention {convention!r}")
        lr = self.cfg.methods[label].grid.learning_rate[0]
        method, _, _ = self.build(label, {"learning_rate": lr})
        return int(self.cfg.finetune.budget) * method.grads_per_step

    def finetune_config(
        self, label: str, hparams: Mapping[str, Any], calls: int, seed: int, split: str
    ) -> dict[str, Any]:
        c = self.cfg
        spec = c.methods[label]
        return {
            **self.pretrain_config(seed),
            "job": "finetune",
            "finetune": c.finetune.to_dict(),
            "method": spec.method,
            "fixed": spec.fixed.to_dict(),
            "hparams": dict(hparams),
            "calls": calls,
            "split": split,
        }

    def _finetune(
        self, label: str, hparams: Mapping[str, Any], calls: int, seed: int, split: str
    ) -> dict[str, Any]:
        method, calls, steps = self.build(label, hparams, calls)
        if calls % method.period:
            raise ValueError(f"{label}: {calls} calls is not a multiple of {method.period}")
        data = self.data(seed)
        ft = self.cfg.finetune
        stream = int(np.random.SeedSequence([seed, 2]).generate_state(1)[0])
        order = batch_indices(data.new.train.x.shape[0], ft.batch_size, calls, stream)
        every = max(method.period, calls // ft.curve_points // method.period * method.period)
        res = train.finetune(
            method,
            self.model,
            self.pretrained(seed),
            data,
            order,
            every,
            progress=self.progress,
            evaluate_test=split == "test",
        )
        return {
            "val": res.val,
            "test": res.test,
            "curve": res.curve,
            "calls": calls,
            "schedule_steps": steps,
            "wall_time_s": res.wall_time,
        }

    def finetune_all(
        self, runs: list[tuple[str, Mapping[str, Any], int, int, str]]
    ) -> list[dict[str, Any]]:
        """Records of ``(label, hparams, calls, seed, split)`` runs (one sharded batch)."""
        jobs = [(self.finetune_config(*r), functools.partial(self._finetune, *r)) for r in runs]
        return self.runner.run_all(jobs)


def criterion(record: Mapping[str, Any]) -> float:
    """Selection score: mean of old and new validation MSE (lower is better)."""
    score = protocol.metric(record["val"], "mean")  # NaN for a diverged run (stored null)
    return score if math.isfinite(score) else math.inf


def _jsonable_grid(spec: Any) -> dict[str, tuple]:
    return {k: tuple(v) for k, v in spec.grid.to_dict().items()}


def run(suite: Suite) -> dict[str, Any]:
    """Runs every phase (or reads it from the cache) and returns the results dict."""
    cfg = suite.cfg
    seeds, tuning = tuple(cfg.seeds), tuple(cfg.tuning_seeds)
    start = time.perf_counter()
    pre = suite.pretrain_all(tuning + seeds)
    out: dict[str, Any] = {
        "name": cfg.name,
        "config": cfg.to_dict(),
        "spread": results.SPREAD,
        "pretrained": {str(s): pre[s] for s in seeds},
        "conventions": {},
    }
    for convention in cfg.conventions:
        labels = list(cfg.methods)
        if convention == "main":
            # The paper's rows and SAM, and the best baseline of the first convention: the
            # comparison keeps its baseline (a one-gradient method runs the same either way).
            keep = set(cfg.main_convention_methods)
            if tuning:
                keep.add(out["conventions"][cfg.tune_conventions[0]]["best_baseline"])
            labels = [k for k in labels if k in keep]
        calls = {label: suite.calls(label, convention) for label in labels}
        conv: dict[str, Any] = {"calls": calls}
        selections: dict[str, protocol.Selection] = {}
        if tuning and convention not in cfg.tune_conventions:
            # The second view: the points selected under the first convention's budget.
            first = out["conventions"][cfg.tune_conventions[0]]
            tuned = {k: protocol.Selection(**v) for k, v in first["selection"].items()}
            selections = {k: tuned[k] for k in labels}
            conv["selection"] = {k: v.to_json() for k, v in selections.items()}
            conv["selected_under"] = cfg.tune_conventions[0]
        elif tuning:

            def score(points, calls=calls):
                runs = [(lb, hp, calls[lb], s, "val") for lb, hp in points for s in tuning]
                recs = suite.finetune_all(runs)
                per_point = [recs[i : i + len(tuning)] for i in range(0, len(recs), len(tuning))]
                return [float(np.mean([criterion(r) for r in group])) for group in per_point]

            grids = {label: _jsonable_grid(cfg.methods[label]) for label in labels}
            selections = protocol.tune(grids, score, max_widening=cfg.max_grid_widening)
            conv["selection"] = {k: v.to_json() for k, v in selections.items()}
        # Reporting runs: each tuned method at its selected point ...
        rows: dict[str, dict[str, Any]] = {}
        for label, sel in selections.items():
            rows[label] = {"method": cfg.methods[label].method, "hparams": sel.hparams}
        # ... and the paper's rows at the paper's learning rate.
        paper_lr = cfg.finetune.paper_learning_rate
        for label in PAPER_ROWS:
            if label not in labels:
                continue
            grid = _jsonable_grid(cfg.methods[label])
            ratios = [{"ref_ratio": r} for r in grid["ref_ratio"]] if "ref_ratio" in grid else [{}]
            for extra in ratios:
                hp = {"learning_rate": paper_lr, **extra}
                rows[paper_label(label, hp)] = {
                    "method": cfg.methods[label].method,
                    "hparams": hp,
                    "base": label,
                }
        runs = [
            (row.get("base", label), row["hparams"], calls[row.get("base", label)], s, "test")
            for label, row in rows.items()
            for s in seeds
        ]
        protocol.attach_runs(rows, seeds, suite.finetune_all(runs))
        if selections:
            ratio = paper_ratio_choice(selections, paper_lr)
            methods = {k: cfg.methods[k].method for k in selections}
            conv["paper_profit_ratio"] = ratio
            conv["best_baseline"] = (
                protocol.best_baseline(selections, methods)
                if "selected_under" not in conv
                else out["conventions"][conv["selected_under"]]["best_baseline"]
            )
            conv["comparisons"] = compare(cfg, rows, conv["best_baseline"], ratio)
        conv["rows"] = rows
        out["conventions"][convention] = conv
    out["wall_time_s"] = time.perf_counter() - start
    return out


def paper_label(label: str, hparams: Mapping[str, Any]) -> str:
    """Row name of a paper-protocol run: ``paper:full_ft``, ``paper:profit_rmsprop@100``."""
    if "ref_ratio" not in hparams:
        return f"paper:{label}"
    ratio = hparams["ref_ratio"]
    return f"paper:{label}@{'auto' if ratio is None else f'{ratio:g}'}"


def paper_ratio_choice(selections: Mapping[str, protocol.Selection], lr: float) -> Any:
    """The λ ratio of ``profit_rmsprop`` with the best validation score at the paper's lr."""
    sel = selections.get("profit_rmsprop")
    if sel is None:
        return None
    at_lr = [s for s in sel.scores if math.isclose(s["hparams"]["learning_rate"], lr)]
    if not at_lr:
        return None
    return min(at_lr, key=lambda s: s["score"])["hparams"]["ref_ratio"]


def compare(
    cfg: ml_collections.ConfigDict,
    rows: Mapping[str, Mapping[str, Any]],
    baseline: str,
    paper_ratio: Any,
) -> dict[str, Any]:
    """PROFIT rows minus the best baseline, paired over reporting seeds (test MSE); of the
    paper's PROFIT rows only the ratio chosen on validation."""
    labels = [
        label
        for label, row in rows.items()
        if protocol.is_profit(row["method"])
        and not (label.startswith("paper:") and row["hparams"].get("ref_ratio") != paper_ratio)
    ]
    return protocol.paired_to(rows, baseline, labels)
