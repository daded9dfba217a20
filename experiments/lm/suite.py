"""The language-model suites (issue 30) on :mod:`experiments.common.suite`: a byte-level
transformer pretrained on one corpus and fine-tuned on another, fully or with LoRA; bits per
byte on the old and the new corpus.

Pretraining (``config.pretrain``): AdamW with warm-up and cosine decay on the old corpus's
training bytes (random windows, :class:`experiments.data.text.WindowSampler`), validation
bits per byte on fixed windows recorded along the way (the convergence curve), a
checkpoint at every point beside the run cache (a stopped pretraining resumes there).
Fine-tuning: the registry method of a label over the trainable parameters only
(:func:`experiments.lm.model.functional`: every ``nnx.Param`` for full fine-tuning, the
``nnx.LoRAParam`` adapters under LoRA, as ``nnx.Optimizer(model, tx, wrt=...)`` would),
so PROFIT's θ_ref and every optimizer's state cover exactly what is trained; the framework's
training loop (:class:`experiments.common.train.Trainer`) runs it, so Lookahead's slow
weights and PROFIT's θ_ref are what is evaluated. Evaluation: bits per byte on fixed
held-out windows (:func:`experiments.data.text.eval_windows`): validation windows for
tuning and the curves, test windows once at the end. Each run records the optimizer's
memory (trainable parameters, extra bytes of state).

Plateau check: the best baseline's new-corpus validation bits per byte fell by less than
0.01 over the last 30% of its run. 0.01 bpb is 0.5% of the ~2 bpb these models reach, the
same relative size as the recipe's 0.5 accuracy points on ~85% (0.6%), and several times
smaller than the differences between learning rates the pilot shows.
"""

from __future__ import annotations

import collections
import functools
import itertools
import json
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from experiments.common import protocol, results
from experiments.common import suite as framework
from experiments.common.train import Trainer, pretrain_optimizer, profit_diagnostics
from experiments.data import text
from experiments.lm import model as lm

PROTOCOL = "lm/v1"
METRIC = framework.Metric(
    name="bits per byte",
    unit="bpb",
    diff_unit="bpb",
    diff_text="bits per byte",
    scale=1.0,
    digits=3,
    lower_is_better=True,
    plateau_tolerance=0.01,
)

#: Compiled training loops a suite keeps (least recently used dropped first).
TRAINERS_KEPT = 8


def _windows_batch(sampler: text.WindowSampler, first: int):
    """Training batches ``{"windows": [batch, context + 1]}`` from call ``first + 1`` on."""
    return ({"windows": sampler(step)} for step in itertools.count(first))


class Suite(framework.Suite):
    """A language-model suite under one config (``experiments/lm/config.py``)."""

    metric = METRIC

    # --- data ------------------------------------------------------------------------

    def corpus(self, name: str, split: str) -> np.ndarray:
        """A corpus's split (``train``, ``validation``, ``test``) as bytes, cut to the config's
        ``max_train_bytes`` / ``max_eval_bytes`` (a prefix; the quick modes)."""
        d = self.cfg.data
        kwargs = {k: d[k] for k in ("sword_dir", "pydocs_dir") if d.get(k) is not None}
        data = text.corpus_bytes(name, split, **kwargs)
        cap = d.max_train_bytes if split == "train" else d.max_eval_bytes
        return data if cap is None else data[:cap]

    def windows(self, which: str, split: str, count: int) -> np.ndarray:
        """Fixed evaluation windows of the ``old`` or ``new`` corpus's split."""
        corpus = self.cfg.task[which]
        return text.eval_windows(self.corpus(corpus, split), self.lm_config.context, count)

    @functools.cached_property
    def eval_sets(self) -> dict[str, np.ndarray]:
        """``{old,new}_{val,test}`` windows (validation: tuning and curves; test: once)."""
        e = self.cfg.eval
        out = {}
        for which in ("old", "new"):
            out[f"{which}_val"] = self.windows(which, "validation", e.val_windows)
            out[f"{which}_test"] = self.windows(which, "test", e.test_windows)
        return out

    @functools.cached_property
    def lm_config(self) -> lm.LMConfig:
        return lm.LMConfig(**self.cfg.model.to_dict())

    # --- evaluation ------------------------------------------------------------------

    def bits_per_byte(self, fn: lm.Functional, params: Any, windows: np.ndarray) -> float:
        """Mean next-byte cross-entropy of the model ``fn.model(params)`` on ``windows``, in
        bits, ``eval.batch_size`` windows at a time."""
        size = self.cfg.eval.batch_size
        total = 0.0
        for i in range(0, len(windows), size):
            batch = jnp.asarray(windows[i : i + size], jnp.int32)
            total += float(_loss(fn, params, batch)) * len(batch)
        return text.nats_to_bits(total / len(windows))

    def evaluate(self, params: Any, split: str) -> dict[str, float]:
        """Old- and new-corpus bits per byte of fine-tuned ``params`` on ``val`` or ``test``."""
        fn = self.start
        return {
            w: self.bits_per_byte(fn, params, self.eval_sets[f"{w}_{split}"])
            for w in ("old", "new")
        }

    # --- pretraining -----------------------------------------------------------------

    def pretrain_config(self) -> dict[str, Any]:
        c = self.cfg
        return {
            "protocol": PROTOCOL,
            "job": "pretrain",
            "corpus": c.task.old,
            "data": {k: c.data[k] for k in ("max_train_bytes", "max_eval_bytes")},
            "model": c.model.to_dict(),
            "pretrain": c.pretrain.to_dict(),
        }

    def _path(self, suffix: str) -> Path:
        return self.runner.cache.path(self.pretrain_config()).with_suffix(suffix)

    def _pretrain(self) -> dict[str, Any]:
        """Pretraining in segments of ``eval_every`` steps through one compiled loop (each
        segment starts from the optimizer state the last one ended with), a checkpoint of
        the parameters, optimizer state and curve after each: a stopped pretraining resumes
        from its last checkpoint with the same batches and the same result."""
        cfg, old = self.cfg.pretrain, self.cfg.task.old
        fn = lm.functional(lm.make_model(self.lm_config, cfg.seed))
        tx = pretrain_optimizer(cfg)
        saved = self._load_checkpoint(fn.params, tx)
        step, params, opt_state, history, train_time = saved or (
            0,
            fn.params,
            tx.init(fn.params),
            [],
            0.0,
        )
        first = step
        carried = {"opt_state": opt_state}  # what the loop's optimizer starts a segment from
        resumable = optax.GradientTransformation(lambda _: carried["opt_state"], tx.update)
        from experiments.methods import plain_method

        trainer = Trainer(plain_method("pretrain_adamw", resumable), _train_loss(fn))
        sampler = text.WindowSampler(
            self.corpus(old, "train"), self.lm_config.context, cfg.batch_size, cfg.seed
        )
        val = self.windows("old", "validation", cfg.val_windows)
        evaluate = lambda p: {"val_bpb": self.bits_per_byte(fn, p, val)}
        if not history:
            history.append({"step": 0, **evaluate(params)})
        while step < cfg.num_steps:
            n = min(cfg.eval_every, cfg.num_steps - step)
            res = trainer.fit(
                params,
                _windows_batch(sampler, step),
                n,
                rng=jax.random.key(cfg.seed),  # unused: the model has no dropout
                eval_fn=evaluate,
                progress=self.progress,
            )
            step += n
            params, carried["opt_state"] = res.stored, res.opt_state
            history.append({**res.history[-1], "step": step})
            train_time += res.train_time_s
            self._save_checkpoint(step, params, res.opt_state, history, train_time)
        params = jax.device_get(params)
        results.write_text_atomic(self._path(".msgpack"), flax.serialization.to_bytes(params))
        self._path(".ckpt.msgpack").unlink(missing_ok=True)
        test = self.windows("old", "test", self.cfg.eval.test_windows)
        return {
            "history": history,
            "val_bpb": history[-1]["val_bpb"],
            "test_bpb": self.bits_per_byte(fn, params, test),
            "params": lm.param_count(lm.make_model(self.lm_config)),
            "train_time_s": train_time,
            "resumed_from": first,
        }

    def _save_checkpoint(
        self, step: int, params: Any, opt_state: Any, history: list, train_time: float
    ) -> None:
        state = jax.device_get((params, opt_state))
        blob = flax.serialization.msgpack_serialize(
            {
                "step": step,
                "history": json.dumps(results.to_jsonable(history)),
                "train_time_s": train_time,
                "state": flax.serialization.to_state_dict(state),
            }
        )
        results.write_text_atomic(self._path(".ckpt.msgpack"), blob)

    def _load_checkpoint(self, params: Any, tx: Any) -> tuple | None:
        """(step, parameters, optimizer state, curve, training seconds) of the last
        checkpoint, or None."""
        path = self._path(".ckpt.msgpack")
        if not path.exists():
            return None
        saved = flax.serialization.msgpack_restore(path.read_bytes())
        template = (params, tx.init(params))
        stored, opt_state = flax.serialization.from_state_dict(template, saved["state"])
        history = json.loads(saved["history"])
        return int(saved["step"]), stored, opt_state, history, float(saved["train_time_s"])

    def _start(self) -> dict[str, Any]:
        """The pretrained model's bits per byte on both corpora, before fine-tuning."""
        return {s: self.evaluate(self.start.params, s) for s in ("val", "test")}

    def pretrain(self) -> dict[str, Any]:
        """The pretraining record, with the pretrained model's bits per byte on both corpora
        before fine-tuning (``start``; a LoRA model starts equal to its base)."""
        out = dict(self.runner.run_all([(self.pretrain_config(), self._pretrain)])[0])
        out["start"] = self.start_record
        return out

    @functools.cached_property
    def start_record(self) -> dict[str, Any]:
        """The pretrained model's ``{"val", "test"}`` bits per byte (a cached job)."""
        job = {
            **self.pretrain_config(),
            "job": "start",
            "task": self.cfg.task.to_dict(),
            "eval": self.cfg.eval.to_dict(),
        }
        return self.runner.run_all([(job, self._start)])[0]

    @functools.cached_property
    def pretrained(self) -> dict:
        """The pretrained model's parameters (a plain dict), pretraining first if needed."""
        path = self._path(".msgpack")
        if not path.exists():  # only the JSON records of a cache are committed
            self._pretrain()
        template = lm.functional(lm.make_model(self.lm_config)).params
        return flax.serialization.from_bytes(template, path.read_bytes())

    @functools.cached_property
    def start(self) -> lm.Functional:
        """The fine-tuning start as a function of its trainable parameters: the pretrained
        model (full), or its LoRA copy with fresh adapters (``finetune.lora_seed``) whose
        base weights are frozen."""
        model = lm.functional(lm.make_model(self.lm_config)).model(self.pretrained)
        rank = self.cfg.finetune.lora_rank
        if rank is None:
            return lm.functional(model)
        lora = lm.with_lora(model, rank, seed=self.cfg.finetune.lora_seed)
        return lm.functional(lora, nnx.LoRAParam)

    # --- fine-tuning -----------------------------------------------------------------

    def build(self, label: str, hparams: Mapping[str, Any], calls: int = 0):
        """The registry method of ``label`` over the trainable parameters (L2-SP without a
        head: every parameter pulled toward its start; ``profit_warmup``: AdamW for
        ``finetune.warmup_fraction`` of the budget, also in the ``@main`` rows)."""
        del calls  # a constant learning rate: the method does not depend on the run length
        params = self.start.params
        no_head = jax.tree.map(lambda _: False, params)
        return framework.registry_method(self.cfg, label, hparams, params, head_mask=no_head)

    def job(
        self, label: str, hparams: Mapping[str, Any], seed: int, split: str, calls: int
    ) -> dict[str, Any]:
        """The run's full configuration (its cache key); ``calls`` only when not the budget."""
        context = {
            **self.pretrain_config(),
            "task": self.cfg.task.to_dict(),
            "eval": self.cfg.eval.to_dict(),
        }
        return framework.finetune_job(self.cfg, context, label, hparams, seed, split, calls)

    def memory(self, method: Any) -> dict[str, int]:
        """Trainable parameters and the method's extra memory in bytes (optimizer state and
        what the loop stores beyond the parameters: θ_ref, Lookahead's slow weights, ...)."""
        from experiments.methods import method_bytes_per_param

        params = self.start.params
        n = sum(int(np.size(x)) for x in jax.tree.leaves(params))
        return {
            "trainable_params": n,
            "extra_bytes": round(method_bytes_per_param(method, params) * n),
        }

    def trainer(self, label: str, hparams: Mapping[str, Any], calls: int) -> Trainer:
        """The training loop of a run (its method's update over the trainable parameters,
        PROFIT's diagnostics logged). The last few are kept (compiling an update step takes
        seconds, a run of the quick config less): a row's reporting seeds and its ``@main``
        twin, and a tuned point's reporting runs, compile it once."""
        key = json.dumps([label, results.to_jsonable(dict(hparams))], sort_keys=True)
        if key not in self._trainers:
            method = self.build(label, hparams, calls)
            metrics = profit_diagnostics if protocol.is_profit(method.name) else None
            self._trainers[key] = Trainer(method, _train_loss(self.start), state_metrics=metrics)
            while len(self._trainers) > TRAINERS_KEPT:
                self._trainers.popitem(last=False)
        self._trainers.move_to_end(key)
        return self._trainers[key]

    @functools.cached_property
    def _trainers(self) -> collections.OrderedDict[str, Trainer]:
        return collections.OrderedDict()

    def finetune(
        self, label: str, hparams: Mapping[str, Any], seed: int, split: str, calls: int
    ) -> dict[str, Any]:
        ft = self.cfg.finetune
        trainer = self.trainer(label, hparams, calls)
        method = trainer.method
        every = calls // ft.curve_points
        if every % method.period or calls % method.period:
            raise ValueError(
                f"{label}: {calls} calls / eval interval not multiples of {method.period}"
            )
        start = time.perf_counter()
        sampler = text.WindowSampler(
            self.corpus(self.cfg.task.new, "train"), self.lm_config.context, ft.batch_size, seed
        )
        res = trainer.fit(
            self.start.params,
            _windows_batch(sampler, 0),
            calls,
            rng=jax.random.key(seed),
            eval_fn=lambda p: {f"val_{k}": v for k, v in self.evaluate(p, "val").items()},
            eval_every=every,
            progress=self.progress,
        )
        # Every run starts from the same model (Lookahead's slow weights and PROFIT's θ_ref
        # too), evaluated once: the curve's first point is the start record's.
        begin = {"step": 0, **{f"val_{k}": v for k, v in self.start_record["val"].items()}}
        curve = [begin, *res.history]
        return {
            "val": {k: curve[-1][f"val_{k}"] for k in ("old", "new")},
            "test": self.evaluate(res.eval_params, "test") if split == "test" else {},
            "curve": curve,
            "calls": calls,
            "period": method.period,
            "grads_per_step": getattr(method, "grads_per_step", 1),
            "memory": self.memory(method),
            "train_time_s": res.train_time_s,
            "wall_time_s": time.perf_counter() - start,
        }


def _train_loss(fn: lm.Functional):
    """The training loop's ``loss_fn(params, batch, rng)``: next-byte cross-entropy (nats)."""

    def loss_fn(params, batch, rng):
        del rng  # no dropout: the model is deterministic
        return lm.next_byte_loss(fn.model(params), batch["windows"]), {}

    return loss_fn


@functools.partial(jax.jit, static_argnums=0)
def _loss(fn: lm.Functional, params: Any, windows: jax.Array) -> jax.Array:
    return lm.next_byte_loss(fn.model(params), windows)
