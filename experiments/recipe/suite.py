"""The recipe as a suite of :mod:`experiments.common.suite`: image classification data,
models (the MLP, the ViT-mini), accuracy on the old and the new task.

Pretraining: the old-task model with AdamW (``config.pretrain``), its old-task
*validation* accuracy recorded along the way (the convergence check). Tasks
(``config.task.kind``): ``class_split`` (new classes, a new zero head; old accuracy
under the frozen pretrained head), ``covariate_shift`` and ``maintenance`` (one head
kept; the new part's images shifted, or as they are). Extra rows: PROFIT's λ ratio
and n_ref ablations at its selected point. Plateau check: the best baseline's new-task
validation accuracy rose less than 0.5 points over the last 30% of its run.

The model's interface (:meth:`Suite.init_weights`, :meth:`Suite.trainer` and the methods
beside them) is flax.linen's here, the model's weights its parameters; a suite of
another model family overrides it (``experiments.resnet.suite``: NNX, with batch-norm
statistics beside the parameters).

With several processes (``jax.distributed``, :mod:`experiments.common.suite_cli`),
every update step and evaluation runs data parallel over all processes' devices
(:class:`~experiments.common.train.DataParallel`), each process feeding its own rows
of every batch.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import ml_collections
import numpy as np

from experiments.common import classify, protocol, results
from experiments.common import suite as framework
from experiments.common.data import eval_batches, split_fraction, split_validation, train_batches
from experiments.common.shifts import shift_dataset
from experiments.common.train import (
    DataParallel,
    Trainer,
    make_classifier_eval,
    profit_diagnostics,
    stack_batches,
)

PROTOCOL = "recipe/v1"
METRIC = framework.Metric(
    name="accuracy",
    unit="%",
    diff_unit="pts",
    diff_text="accuracy in points",
    scale=100.0,
    digits=2,
    lower_is_better=False,
    plateau_tolerance=0.005,
)


def build_model(model_cfg: ml_collections.ConfigDict, num_classes: int):
    if model_cfg.kind == "mlp":
        from experiments.mlp.model import MLP

        return MLP(num_classes=num_classes, hidden=tuple(model_cfg.hidden))
    from experiments.vit.model import build_model as vit

    return vit(model_cfg, num_classes)


class Suite(framework.Suite):
    """A recipe suite under one config (``experiments/recipe/config.py``)."""

    metric = METRIC

    @functools.cached_property
    def parallel(self) -> DataParallel | None:
        """Data parallelism over every process's devices in a multi-process run."""
        return DataParallel.over_all_devices() if jax.process_count() > 1 else None

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
        d = classify.load_transfer_data(self.cfg)
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

    # --- the model's interface (flax.linen: the weights are the parameters) ------------

    def init_weights(self, which: int, rng: jax.Array) -> Any:
        """Fresh weights of the old (``which`` 0) or the new (1) task's model."""
        return classify.init_params(self.models[which], self.data["old_train"], rng)

    def trainable(self, weights: Any) -> Any:
        """The part of ``weights`` that the optimizers update (the parameters)."""
        return weights

    def with_new_head(self, pretrained: Any) -> Any:
        """The class split's start: the pretrained backbone, a zero head for the new task."""
        fresh = jax.eval_shape(lambda: self.init_weights(1, jax.random.key(0)))
        return classify.with_zero_head(pretrained, fresh)

    def with_head_of(self, weights: Any, source: Any) -> Any:
        """``weights`` with the head of ``source`` (old accuracy under the pretrained head)."""
        return {**weights, classify.HEAD: source[classify.HEAD]}

    def apply_fn(self, which: int):
        """``(weights, uint8 images) -> logits`` of a task's model, in inference mode."""
        return classify.make_apply_fn(self.models[which])

    def trainer(
        self, method: Any, which: int, hparams: Mapping[str, Any] | None = None, metrics=None
    ) -> Trainer:
        """The training loop of ``method`` on a task's model (``which``); ``hparams``: the
        run's (a suite whose loop depends on more than the method reads them); ``metrics``:
        the trainer's ``state_metrics``."""
        del hparams
        loss = classify.make_loss_fn(self.models[which], self.cfg.augment)
        return Trainer(method, loss, self.parallel, metrics)

    def fit(self, trainer: Trainer, weights: Any, *args: Any, **kwargs: Any):
        """``trainer.fit`` from ``weights`` (``eval_fn`` takes weights): the final weights to
        evaluate and the :class:`~experiments.common.train.TrainResult`."""
        res = trainer.fit(weights, *args, **kwargs)
        return res.eval_params, res

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
        return make_classifier_eval(self.apply_fn(0 if which == "old" else 1), self.parallel)

    def _pretrain(self) -> dict[str, Any]:
        cfg, d = self.cfg.pretrain, self.data
        init_rng, train_rng = jax.random.split(jax.random.key(cfg.seed))
        evaluate = self._evaluator("old")
        bs = self.cfg.eval_batch_size
        from experiments.methods import plain_method

        params, result = self.fit(
            self.trainer(plain_method("pretrain_adamw", classify.pretrain_optimizer(cfg)), 0),
            self.init_weights(0, init_rng),
            train_batches(d["old_train"], cfg.batch_size, seed=cfg.seed),
            cfg.num_steps,
            rng=train_rng,
            eval_fn=lambda p: {
                "old_val_acc": evaluate(p, eval_batches(d["old_val"], bs))["accuracy"]
            },
            eval_every=cfg.eval_every,
            progress=self.progress,
        )
        if jax.process_index() == 0:  # replicated: every process holds the whole model
            host = jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), params)
            results.write_text_atomic(self._params_path(), flax.serialization.to_bytes(host))
        return {
            "history": result.history,
            "old_val_acc": result.history[-1]["old_val_acc"],
            "old_test_acc": evaluate(params, eval_batches(d["old_test"], bs))["accuracy"],
            "train_time_s": result.train_time_s,
        }

    def pretrain(self) -> dict[str, Any]:
        """The pretraining record; on the same-label tasks with the pretrained model's
        accuracies on both tasks before fine-tuning (``start``: the same head reads both)."""
        out = dict(self.runner.run_all([(self.pretrain_config(), self._pretrain)])[0])
        if self.kind != "class_split":
            out["start"] = {w: self.accuracies(self.start_params, w) for w in ("val", "test")}
        return out

    @functools.cached_property
    def pretrained(self) -> Any:
        if jax.process_count() > 1:  # process 0 writes the parameters: wait for it
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("pretrained parameters")
        path = self._params_path()
        if not path.exists():  # only the JSON records of a cache are committed
            self._pretrain()
        template = jax.eval_shape(lambda: self.init_weights(0, jax.random.key(0)))
        return flax.serialization.from_bytes(template, path.read_bytes())

    @functools.cached_property
    def start_params(self) -> Any:
        if self.kind != "class_split":  # same labels: the whole model, head included
            return self.pretrained
        return self.with_new_head(self.pretrained)

    def accuracies(self, params: Any, which: str) -> dict[str, float]:
        """Old- and new-task accuracy of ``params`` on the ``which`` split (val or test).

        Class split: old accuracy under the frozen pretrained head. Same labels: the one
        head, on clean (old) and shifted or later (new) images.
        """
        d, bs = self.data, self.cfg.eval_batch_size
        if self.parallel is not None:
            params = self.parallel.replicate(params)
        old_params = params
        if self.kind == "class_split":
            pretrained = self.pretrained
            if self.parallel is not None:
                pretrained = self.parallel.replicate(pretrained)
            old_params = self.with_head_of(params, pretrained)
        old = self._evaluator("old")(old_params, eval_batches(d[f"old_{which}"], bs))
        new = self._evaluator("new")(params, eval_batches(d[f"new_{which}"], bs))
        return {"old": old["accuracy"], "new": new["accuracy"]}

    # --- fine-tuning -----------------------------------------------------------------

    def build(self, label: str, hparams: Mapping[str, Any], calls: int = 0):
        """The registry method of ``label`` (a warm-up method: AdamW for a share of the
        gradient budget, also in the ``@main`` rows)."""
        del calls  # a constant learning rate: the method does not depend on the run length
        params = self.trainable(self.start_params)
        return framework.registry_method(
            self.cfg, label, hparams, params, **classify.default_mask_fn(params)
        )

    def job(
        self, label: str, hparams: Mapping[str, Any], seed: int, split: str, calls: int
    ) -> dict[str, Any]:
        """The run's full configuration (its cache key); ``calls`` only when not the budget."""
        context = {**self.pretrain_config(), "new_task": self.cfg.new_task.to_dict()}
        if self.kind != "class_split":
            context["task"] = self.cfg.task.to_dict()
        return framework.finetune_job(self.cfg, context, label, hparams, seed, split, calls)

    def finetune(
        self, label: str, hparams: Mapping[str, Any], seed: int, split: str, calls: int
    ) -> dict[str, Any]:
        ft, d = self.cfg.finetune, self.data
        method = self.build(label, hparams, calls)
        every = calls // ft.curve_points
        per_call = method.grads_per_call  # > 1: one-call PROFIT, a whole cycle per call
        unit = method.period * per_call
        if every % unit or calls % unit:
            raise ValueError(f"{label}: {calls} calls / eval interval not multiples of {unit}")
        start = time.perf_counter()
        state_metrics = profit_diagnostics if protocol.is_profit(method.name) else None
        batches = train_batches(d["new_train"], ft.batch_size, seed=seed)
        final, res = self.fit(
            self.trainer(method, 1, hparams, state_metrics),
            self.start_params,
            stack_batches(batches, per_call) if per_call > 1 else batches,
            calls // per_call,
            rng=jax.random.key(seed),
            eval_fn=lambda p: {f"val_{k}": v for k, v in self.accuracies(p, "val").items()},
            eval_every=every // per_call,
            eval_at_start=True,
            progress=self.progress,
        )
        curve = [{**h, "step": h["step"] * per_call} for h in res.history]  # in gradients
        out = {
            "val": self.accuracies(final, "val"),
            "test": self.accuracies(final, "test") if split == "test" else {},
            "curve": curve,
            "calls": calls,
            "period": method.period,
            "grads_per_step": method.grads_per_step,
            "train_time_s": res.train_time_s,
            "wall_time_s": time.perf_counter() - start,
        }
        if per_call > 1:
            out["grads_per_call"] = per_call
        return out

    def extra_rows(self, selections: Mapping[str, protocol.Selection]) -> dict[str, dict]:
        """PROFIT's ablations at its selected point: λ ratio and n_ref (not compared)."""
        ab = self.cfg.ablation
        if not (ab.ratios or ab.n_refs):
            return {}
        base = selections[ab.method].hparams
        rows = {}
        for ratio in ab.ratios:
            hp = {**base, "ref_ratio": ratio}
            rows[f"ablation:ratio={ratio:g}"] = {"hparams": hp}
        for n_ref in ab.n_refs:
            at = {k: v for k, v in base.items() if k != "n_ref"}  # n_ref 1 is the default
            rows[f"ablation:n_ref={n_ref}"] = {
                "hparams": {**at, "n_ref": n_ref} if n_ref != 1 else at
            }
        return {
            k: {"method": ab.method, "base": ab.method, "compared": False, **v}
            for k, v in rows.items()
        }
