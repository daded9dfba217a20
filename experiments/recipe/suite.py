"""The recipe's protocol: pretrain once, tune every method on validation, report on test.

Phases (each a batch of cached, shardable jobs, see :mod:`experiments.common.protocol`):

1. **Pretrain** the old-task model (AdamW, ``config.pretrain``) with its
   old-task *validation* accuracy recorded along the way (the convergence check).
2. **Tune** every method's grid on the tuning seeds; score = −(mean of old and
   new validation accuracy), averaged over tuning seeds; a best learning rate at
   the grid's edge widens the grid. Then PROFIT's n_ref (``config.n_ref_grid``) at
   each PROFIT row's selected point, by the same score.
3. **Report** every method at its selected point on the reporting seeds: test
   accuracy once at the end, validation accuracy along the way (learning curves).
4. **Ablate** PROFIT at its selected learning rate: λ ratio and n_ref.
5. **Compare** PROFIT rows with the best baseline (best validation score):
   paired differences over reporting seeds with 95% intervals; check that the
   best baseline's new-task validation accuracy has plateaued.
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

from experiments.common import protocol, results, transfer
from experiments.common.data import eval_batches, split_fraction, split_validation, train_batches
from experiments.common.shifts import shift_dataset
from experiments.common.train import Trainer, train

PROTOCOL = "recipe/v1"


def build_model(model_cfg: ml_collections.ConfigDict, num_classes: int):
    if model_cfg.kind == "mlp":
        from experiments.mlp.model import MLP

        return MLP(num_classes=num_classes, hidden=tuple(model_cfg.hidden))
    from experiments.vit.model import build_model as vit  # not .main: it defines flags

    return vit(model_cfg, num_classes)


@dataclasses.dataclass(eq=False)  # hashed by identity: its methods are lru-cached
class Suite:
    cfg: ml_collections.ConfigDict
    runner: protocol.Runner
    progress: bool = False

    @property
    def kind(self) -> str:
        """``class_split`` (new classes, new head) or a same-label task (one head kept):
        ``covariate_shift`` (the new part's inputs shifted) or ``maintenance``."""
        return self.cfg.task.kind

    @functools.cached_property
    def data(self) -> dict[str, Any]:
        """``{old,new}_{train,val,test}``; validation carved from the training split.

        Class split: the old and new tasks' own splits. Same labels: pretrain on one part of
        the training split, fine-tune on the other (for a covariate shift the new part's
        train, validation and test images are shifted; the test images are the test split's).
        """
        d = transfer.load_transfer_data(self.cfg)
        old_source, new_source, new_test = d.old_train, d.new_train, d.new_test
        if self.kind != "class_split":
            old_source, new_source = split_fraction(d.old_train, self.cfg.task.pretrain_fraction)
            new_test = d.old_test
        old_train, old_val = split_validation(old_source, self.cfg.num_val)
        new_train, new_val = split_validation(new_source, self.cfg.num_val)
        if self.kind == "covariate_shift":
            t = self.cfg.task
            shift = lambda ds, i: shift_dataset(ds, t.shift, t.severity, seed=t.shift_seed + i)
            new_train, new_val, new_test = (
                shift(new_train, 0),
                shift(new_val, 1),
                shift(new_test, 2),
            )
        elif self.kind not in ("class_split", "maintenance"):
            raise ValueError(f"unknown task kind {self.kind!r}")
        return {
            "old_train": old_train,
            "old_val": old_val,
            "old_test": d.old_test,
            "new_train": new_train,
            "new_val": new_val,
            "new_test": new_test,
        }

    @functools.cached_property
    def models(self):
        n_old = self.data["old_train"].num_classes
        n_new = self.data["new_train"].num_classes
        return build_model(self.cfg.model, n_old), build_model(self.cfg.model, n_new)

    # --- pretraining -----------------------------------------------------------------

    def pretrain_config(self) -> dict[str, Any]:
        c = self.cfg
        out = {
            "protocol": PROTOCOL,
            "job": "pretrain",
            "old_task": c.old_task.to_dict(),
            "num_val": c.num_val,
            "model": c.model.to_dict(),
            "pretrain": c.pretrain.to_dict(),
            "augment": c.augment.to_dict(),
        }
        if self.kind != "class_split":  # the pretraining part (shared by every same-label task)
            out["pretrain_fraction"] = c.task.pretrain_fraction
        return out

    def _params_path(self) -> Path:
        return self.runner.cache.path(self.pretrain_config()).with_suffix(".msgpack")

    @functools.lru_cache(maxsize=2)  # noqa: B019 (compiled once per process)
    def _evaluator(self, which: str):
        model = self.models[0 if which == "old" else 1]
        return transfer.make_classifier_eval(transfer.make_apply_fn(model))

    def _pretrain(self) -> dict[str, Any]:
        cfg, d = self.cfg.pretrain, self.data
        old_model = self.models[0]
        init_rng, train_rng = jax.random.split(jax.random.key(cfg.seed))
        params = transfer.init_params(old_model, d["old_train"], init_rng)
        evaluate = self._evaluator("old")
        bs = self.cfg.eval_batch_size
        from experiments.methods import plain_method

        result = train(
            plain_method("pretrain_adamw", transfer.pretrain_optimizer(cfg)),
            params,
            transfer.make_loss_fn(old_model, self.cfg.augment),
            train_batches(d["old_train"], cfg.batch_size, seed=cfg.seed),
            cfg.num_steps,
            rng=train_rng,
            eval_fn=lambda p: {
                "old_val_acc": evaluate(p, eval_batches(d["old_val"], bs))["accuracy"]
            },
            eval_every=cfg.eval_every,
            progress=self.progress,
        )
        params = result.eval_params
        results.write_text_atomic(self._params_path(), flax.serialization.to_bytes(params))
        return {
            "history": result.history,
            "old_val_acc": result.history[-1]["old_val_acc"],
            "old_test_acc": evaluate(params, eval_batches(d["old_test"], bs))["accuracy"],
            "train_time_s": result.train_time_s,
        }

    def pretrain(self) -> dict[str, Any]:
        return self.runner.run_all([(self.pretrain_config(), self._pretrain)])[0]

    @functools.cached_property
    def pretrained(self) -> Any:
        path = self._params_path()
        if not path.exists():  # only the JSON records of a cache are committed
            self._pretrain()
        template = jax.eval_shape(
            lambda: transfer.init_params(self.models[0], self.data["old_train"], jax.random.key(0))
        )
        return flax.serialization.from_bytes(template, path.read_bytes())

    @functools.cached_property
    def start_params(self) -> Any:
        if self.kind != "class_split":  # same labels: the whole model, head included
            return self.pretrained
        return transfer.finetune_params(self.pretrained, self.models[1], self.data["new_train"])

    def accuracies(self, params: Any, which: str) -> dict[str, float]:
        """Old- and new-task accuracy of ``params`` on the ``which`` split (val or test).

        Class split: old accuracy under the frozen pretrained head. Same labels: the one
        head, on clean (old) and shifted or later (new) images.
        """
        d, bs = self.data, self.cfg.eval_batch_size
        old_params = params
        if self.kind == "class_split":
            old_params = {**params, transfer.HEAD: self.pretrained[transfer.HEAD]}
        old = self._evaluator("old")(old_params, eval_batches(d[f"old_{which}"], bs))
        new = self._evaluator("new")(params, eval_batches(d[f"new_{which}"], bs))
        return {"old": old["accuracy"], "new": new["accuracy"]}

    # --- fine-tuning -----------------------------------------------------------------

    def build(self, label: str, hparams: Mapping[str, Any]):
        from experiments import methods as registry

        spec = self.cfg.methods[label] if label in self.cfg.methods else None
        method = spec.method if spec else label
        fixed = spec.fixed.to_dict() if spec else {}
        params = self.start_params
        kwargs = {**transfer.default_mask_fn(params), **fixed, **hparams}
        if method == "profit_warmup":  # a share of the gradient budget (also for @main rows)
            ft = self.cfg.finetune
            kwargs["warmup_steps"] = registry.warmup_steps(
                ft.warmup_fraction, ft.budget, hparams.get("n_ref", 1)
            )
        return registry.make_method(method, params, **kwargs)

    def finetune_config(
        self, label: str, hparams: Mapping[str, Any], seed: int, split: str, calls: int = 0
    ) -> dict[str, Any]:
        """The job's full configuration (its cache key). ``calls`` 0: the budget."""
        spec = self.cfg.methods[label]
        out = {
            **self.pretrain_config(),
            "job": "finetune",
            "new_task": self.cfg.new_task.to_dict(),
            "finetune": self.cfg.finetune.to_dict(),
            "method": spec.method,
            "fixed": spec.fixed.to_dict(),
            "hparams": dict(hparams),
            "seed": seed,
            "split": split,
        }
        if self.kind != "class_split":
            out["task"] = self.cfg.task.to_dict()
        if calls and calls != self.cfg.finetune.budget:
            out["calls"] = calls
        return out

    def _finetune(
        self, label: str, hparams: Mapping[str, Any], seed: int, split: str, calls: int = 0
    ) -> dict[str, Any]:
        ft, d = self.cfg.finetune, self.data
        method = self.build(label, hparams)
        calls = calls or ft.budget
        every = calls // ft.curve_points
        if every % method.period or calls % method.period:
            raise ValueError(
                f"{label}: {calls} calls / eval interval not multiples of {method.period}"
            )
        start = time.perf_counter()
        state_metrics = _profit_diagnostics if protocol.is_profit(method.name) else None
        trainer = Trainer(
            method, transfer.make_loss_fn(self.models[1], self.cfg.augment), None, state_metrics
        )
        res = trainer.fit(
            self.start_params,
            train_batches(d["new_train"], ft.batch_size, seed=seed),
            calls,
            rng=jax.random.key(seed),
            eval_fn=lambda p: {f"val_{k}": v for k, v in self.accuracies(p, "val").items()},
            eval_every=every,
            eval_at_start=True,
            progress=self.progress,
        )
        final = res.eval_params
        return {
            "val": self.accuracies(final, "val"),
            "test": self.accuracies(final, "test") if split == "test" else {},
            "curve": res.history,
            "calls": calls,
            "period": method.period,
            "grads_per_step": method.grads_per_step,
            "train_time_s": res.train_time_s,
            "wall_time_s": time.perf_counter() - start,
        }

    def finetune_all(self, runs) -> list[dict[str, Any]]:
        """Records of ``(label, hparams, seed, split[, calls])`` runs (one sharded batch)."""
        jobs = [(self.finetune_config(*r), functools.partial(self._finetune, *r)) for r in runs]
        return self.runner.run_all(jobs)


def _profit_diagnostics(opt_state: Any) -> dict[str, jax.Array]:
    """PROFIT's diagnostics of the last main step, logged along training (averaged over the
    calls between evaluations): conflict rate, cos(g, Δ), removed fraction of ‖g‖."""
    from profit_optax import diagnostics

    d = diagnostics(opt_state)
    removed = d["removed_norm"] / jax.numpy.maximum(d["grad_norm"], 1e-30)
    return {"conflict": d["conflict"], "cos_g_delta": d["cos_g_delta"], "removed_frac": removed}


def criterion(record: Mapping[str, Any]) -> float:
    """Selection score (lower is better): −(mean of old and new validation accuracy)."""
    score = -protocol.metric(record["val"], "mean")
    return score if math.isfinite(score) else math.inf


def plateau(row: Mapping[str, Any], tail: float = 0.3) -> dict[str, Any]:
    """New-task validation accuracy over the last ``tail`` of the run (mean over seeds).

    ``gain`` is the rise from the first point of that window to the end; the run
    has plateaued when it is below 0.5 points.
    """
    curves = [
        [(p["step"], p["val_new"]) for p in r["curve"] if "val_new" in p] for r in row["runs"]
    ]
    steps = [s for s, _ in curves[0]]
    mean = np.mean([[v for _, v in c] for c in curves], axis=0)
    first = next(i for i, s in enumerate(steps) if s >= (1 - tail) * steps[-1])
    gain = float(mean[-1] - mean[first])
    return {"from_step": steps[first], "gain": gain, "plateaued": gain < 0.005}


def run(suite: Suite) -> dict[str, Any]:
    cfg = suite.cfg
    seeds, tuning = tuple(cfg.seeds), tuple(cfg.tuning_seeds)
    start = time.perf_counter()
    out: dict[str, Any] = {"name": cfg.name, "config": cfg.to_dict(), "spread": results.SPREAD}
    out["pretrained"] = suite.pretrain()
    if suite.kind != "class_split":  # the same head reads both: report both accuracies
        out["pretrained"]["start"] = {
            which: suite.accuracies(suite.start_params, which) for which in ("val", "test")
        }

    def score(points):
        runs = [(lb, hp, s, "val") for lb, hp in points for s in tuning]
        recs = suite.finetune_all(runs)
        groups = [recs[i : i + len(tuning)] for i in range(0, len(recs), len(tuning))]
        return [float(np.mean([criterion(r) for r in g])) for g in groups]

    grids = {k: {g: tuple(v) for g, v in s.grid.to_dict().items()} for k, s in cfg.methods.items()}
    selections = protocol.tune(grids, score, max_widening=cfg.max_grid_widening)
    # PROFIT's n_ref, chosen on validation at each PROFIT row's selected point.
    profit_labels = [k for k in selections if protocol.is_profit(cfg.methods[k].method)]
    selections = protocol.refine(
        selections, profit_labels, "n_ref", tuple(cfg.get("n_ref_grid", ())), score, default=1
    )
    out["selection"] = {k: v.to_json() for k, v in selections.items()}

    rows: dict[str, dict[str, Any]] = {
        label: {"method": cfg.methods[label].method, "hparams": sel.hparams}
        for label, sel in selections.items()
    }
    ab = cfg.ablation
    base = selections[ab.method].hparams
    for ratio in ab.ratios:
        rows[f"ablation:ratio={ratio:g}"] = {
            "method": ab.method,
            "hparams": {**base, "ref_ratio": ratio},
            "base": ab.method,
        }
    for n_ref in ab.n_refs:
        at = {k: v for k, v in base.items() if k != "n_ref"}  # n_ref 1 is the default
        rows[f"ablation:n_ref={n_ref}"] = {
            "method": ab.method,
            "hparams": {**at, "n_ref": n_ref} if n_ref != 1 else at,
            "base": ab.method,
        }
    # The second budget view: selected methods again with equal *main* steps (their
    # selected hyper-parameters; calls = budget x gradients per step).
    for label in cfg.get("main_steps_rows", ()):
        if label not in selections:
            continue
        method = suite.build(label, selections[label].hparams)
        if method.grads_per_step > 1:
            rows[f"{label}@main"] = {
                "method": cfg.methods[label].method,
                "hparams": selections[label].hparams,
                "base": label,
                "calls": cfg.finetune.budget * method.grads_per_step,
            }
    runs = [
        (row.get("base", label), row["hparams"], s, "test", row.get("calls", 0))
        for label, row in rows.items()
        for s in seeds
    ]
    protocol.attach_runs(rows, seeds, suite.finetune_all(runs))
    best = protocol.best_baseline(selections, {k: cfg.methods[k].method for k in selections})
    out["best_baseline"] = best
    out["plateau"] = plateau(rows[best])
    compared = [
        label
        for label, row in rows.items()
        if protocol.is_profit(row["method"]) and not label.startswith("ablation:")
    ]
    out["comparisons"] = protocol.paired_to(rows, best, compared)
    out["rows"] = rows
    out["wall_time_s"] = time.perf_counter() - start
    return out
