"""The paper toy as a suite of :mod:`experiments.common.suite`: data, model, metric, rows.

Pretraining: one model per seed (tuning and reporting seeds) with RMSProp, the paper's
schedule. Fine-tuning: the registry method of a label with the paper's step decay
stretched over the run's schedule steps. Metric: old- and new-square MSE (validation:
noisy targets; test: noiseless). Besides the tuned rows, the paper's rows at the paper's
learning rate (RMSProp, head only, PROFIT(RMSProp) at every λ ratio; of these only the
ratio chosen on validation is compared with the best baseline).
"""

from __future__ import annotations

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
from experiments.common import suite as framework
from experiments.paper_toy import train
from experiments.paper_toy.data import ToyData, batch_indices, make_data
from experiments.paper_toy.model import MLP

#: Part of every job's configuration: bump it when a job's meaning changes.
PROTOCOL = "paper_toy/v1"
PAPER_ROWS = ("full_ft", "head_only", "profit_rmsprop")
METRIC = framework.Metric(
    name="MSE",
    unit="MSE",
    diff_unit="MSE",
    diff_text="MSE (negative = PROFIT better)",
    scale=1.0,
    digits=3,
    lower_is_better=True,
)


def _masks(params: Any) -> dict[str, Any]:
    from profit_optax import masks

    return {"head_mask": masks.head_mask(params), "embed_mask": masks.embedding_mask(params)}


class Suite(framework.Suite):
    """The paper toy under one config (``experiments/paper_toy/config.py``)."""

    metric = METRIC

    def __init__(
        self, cfg: ml_collections.ConfigDict, runner: protocol.Runner, *, progress: bool = False
    ):
        super().__init__(cfg, runner, progress=progress)
        self.model = MLP(tuple(cfg.model.hidden), cfg.model.activation)
        self.data = functools.lru_cache(maxsize=8)(lambda seed: make_data(self.cfg.data, seed))
        self.pretrained = functools.lru_cache(maxsize=8)(self._load_pretrained)

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

    def _params_path(self, seed: int) -> Path:
        return self.runner.cache.path(self.pretrain_config(seed)).with_suffix(".msgpack")

    def _pretrain(self, seed: int) -> dict[str, Any]:
        p = self.cfg.pretrain
        schedule = optax.exponential_decay(
            p.learning_rate, p.decay_every, p.decay_rate, staircase=True
        )
        tx = optax.rmsprop(schedule, decay=0.99, eps=1e-8, eps_in_sqrt=False)  # PyTorch's
        data: ToyData = self.data(seed)
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

    def _load_pretrained(self, seed: int) -> Any:
        """The pretrained parameters of ``seed``: only the small JSON records of a cache are
        committed; the parameters are regenerated (deterministic on a given machine)."""
        path = self._params_path(seed)
        if not path.exists():
            self._pretrain(seed)
        template = train.init_params(self.model, seed)
        return flax.serialization.from_bytes(template, path.read_bytes())

    def pretrain(self) -> dict[str, Any]:
        """Every seed's pretraining record; the reporting seeds' are reported."""
        seeds = tuple(self.cfg.tuning_seeds) + tuple(self.cfg.seeds)
        jobs = [(self.pretrain_config(s), functools.partial(self._pretrain, s)) for s in seeds]
        records = dict(zip(seeds, self.runner.run_all(jobs), strict=True))
        return {str(s): records[s] for s in self.cfg.seeds}

    # --- fine-tuning -----------------------------------------------------------------

    @functools.cached_property
    def pretrained_shape(self) -> Any:
        return jax.eval_shape(lambda: train.init_params(self.model, 0))

    def build(self, label: str, hparams: Mapping[str, Any], calls: int):
        """The registry method with the paper's step schedule over the run's main steps."""
        from experiments import methods as registry

        spec = self.cfg.methods[label]
        params = self.pretrained_shape
        kwargs = {**_masks(params), **spec.fixed.to_dict(), **hparams}
        probe = registry.make_method(
            spec.method, params, **{**kwargs, **self._warmup_kwargs(spec, 2, 0)}
        )
        steps = calls // probe.grads_per_step
        kwargs["learning_rate"] = self.schedule(hparams["learning_rate"], steps)
        kwargs.update(self._warmup_kwargs(spec, probe.period, calls))
        return registry.make_method(spec.method, params, **kwargs)

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

    def job(
        self, label: str, hparams: Mapping[str, Any], seed: int, split: str, calls: int
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

    def finetune(
        self, label: str, hparams: Mapping[str, Any], seed: int, split: str, calls: int
    ) -> dict[str, Any]:
        method = self.build(label, hparams, calls)
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
            "schedule_steps": calls // method.grads_per_step,
            "wall_time_s": res.wall_time,
        }

    def extra_rows(self, selections: Mapping[str, protocol.Selection]) -> dict[str, dict]:
        """The paper's rows at the paper's learning rate, PROFIT(RMSProp) at every λ ratio of
        its grid; compared with the best baseline: the ratio chosen on validation."""
        lr = self.cfg.finetune.paper_learning_rate
        chosen = paper_ratio_choice(selections, lr)
        rows = {}
        for label in PAPER_ROWS:
            if label not in self.cfg.methods:
                continue
            spec = self.cfg.methods[label]
            grid = spec.grid.to_dict()
            ratios = [{"ref_ratio": r} for r in grid["ref_ratio"]] if "ref_ratio" in grid else [{}]
            for extra in ratios:
                hp = {"learning_rate": lr, **extra}
                rows[paper_label(label, hp)] = {
                    "method": spec.method,
                    "hparams": hp,
                    "base": label,
                    "compared": protocol.is_profit(spec.method)
                    and extra.get("ref_ratio") == chosen,
                }
        return rows


def paper_label(label: str, hparams: Mapping[str, Any]) -> str:
    """Row name of a paper-protocol run: ``paper:full_ft``, ``paper:profit_rmsprop@100``."""
    if "ref_ratio" not in hparams:
        return f"paper:{label}"
    ratio = hparams["ref_ratio"]
    return f"paper:{label}@{'auto' if ratio is None else f'{ratio:g}'}"


def paper_ratio_choice(selections: Mapping[str, Any], lr: float) -> Any:
    """The λ ratio of ``profit_rmsprop`` with the best validation score at the paper's lr
    (``selections``: label -> :class:`~experiments.common.protocol.Selection` or its JSON)."""
    sel = selections.get("profit_rmsprop")
    if sel is None:
        return None
    scores = sel["scores"] if isinstance(sel, Mapping) else sel.scores
    at_lr = [s for s in scores if math.isclose(s["hparams"]["learning_rate"], lr)]
    if not at_lr:
        return None
    return min(at_lr, key=lambda s: s["score"])["hparams"]["ref_ratio"]
