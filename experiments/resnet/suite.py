"""The ResNet suites: the recipe suite (data, tasks, shifts, pretraining, evaluation,
rows) with the ResNet-mini of ``experiments/resnet/model.py`` in place of the linen
models, and PROFIT's batch-statistics arms as extra rows.

The model is NNX, trained functionally: its weights are ``{"params", "batch_stats"}``
(plain dicts of arrays; the graph is fixed by the config), the optimizers see only
``params``, and the running statistics ride beside them through the training loop
(:class:`experiments.common.train.ModelState`). Training forward passes normalize with
the batch's statistics and move the running ones (momentum 0.1, PyTorch's); every
evaluation runs in eval mode, on the running statistics.

Batch statistics under PROFIT (``hparams["batch_stats"]``, absent = ``every_call``):

* ``every_call``: every call's forward pass moves the statistics, also at the probe
  points (what a plain training loop does with PROFIT);
* ``at_model``: a call whose gradient is taken at a probe point
  (``profit_optax.at_probe_point``) leaves them as they were: they move once per cycle;
* ``one_call``: ``profit(one_call=True)``, one update call per cycle (its ``n_ref + 1``
  batches stacked); the gradient at the model moves them, the probe gradients are taken
  in eval mode, on the running statistics (the one-call option the user guide describes;
  after the class split it advises against it).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from experiments.common import protocol
from experiments.common.data import normalize, random_crop_flip
from experiments.common.train import ModelState, Trainer
from experiments.recipe import suite as recipe
from experiments.resnet.model import resnet

#: ``hparams["batch_stats"]``: how PROFIT's calls treat the statistics (the module).
BATCH_STATS = ("every_call", "at_model", "one_call")


def batch_stats_mode(hparams: Mapping[str, Any]) -> str:
    mode = hparams.get("batch_stats", "every_call")
    if mode not in BATCH_STATS:
        raise ValueError(f"batch_stats must be one of {BATCH_STATS}, got {mode!r}")
    return mode


class Suite(recipe.Suite):
    """A ResNet suite under one config (``experiments/resnet/config.py``)."""

    @functools.cached_property
    def models(self):
        """The old and the new task's graphs (``nnx.GraphDef``), for 28×28×1 images."""
        n_old = self.data["old_train"].num_classes
        n_new = self.data["new_train"].num_classes
        build = lambda n: nnx.graphdef(resnet(self.cfg.model.variant, n, rngs=nnx.Rngs(0)))
        return build(n_old), build(n_new)

    # --- the model's interface (NNX; weights = params and running statistics) ----------

    def init_weights(self, which: int, rng: jax.Array) -> Any:
        n = self.data["old_train" if which == 0 else "new_train"].num_classes
        model = resnet(self.cfg.model.variant, n, rngs=nnx.Rngs(rng))
        _, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
        return {"params": nnx.to_pure_dict(params), "batch_stats": nnx.to_pure_dict(stats)}

    def trainable(self, weights: Any) -> Any:
        return weights["params"]

    def with_new_head(self, pretrained: Any) -> Any:
        from experiments.common import classify

        fresh = jax.eval_shape(lambda: self.init_weights(1, jax.random.key(0)))
        params = classify.with_zero_head(pretrained["params"], fresh["params"])
        return {"params": params, "batch_stats": pretrained["batch_stats"]}

    def with_head_of(self, weights: Any, source: Any) -> Any:
        return {**weights, "params": super().with_head_of(weights["params"], source["params"])}

    def forward(self, which: int, params: Any, stats: Any, images: jax.Array, *, train: bool):
        """Logits of uint8 ``images`` and the statistics after the pass (moved in training
        mode, the same in eval mode)."""
        model = nnx.merge(self.models[which], params, stats)
        if not train:
            model.eval()
        logits = model(normalize(images))
        return logits, nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))

    def apply_fn(self, which: int):
        return lambda w, images: self.forward(
            which, w["params"], w["batch_stats"], images, train=False
        )[0]

    def loss_fn(self, which: int, *, train: bool = True):
        """The stateful training loss (augmented images; ``train=False``: on the running
        statistics, the one-call probe gradients)."""
        augment = self.cfg.augment

        def loss_fn(params, batch, rng, stats):
            images = random_crop_flip(
                rng, batch["image"], crop_padding=augment.crop_padding, flip=augment.flip
            )
            logits, stats = self.forward(which, params, stats, images, train=train)
            labels = batch["label"]
            loss = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
            accuracy = (jnp.argmax(logits, -1) == labels).mean()
            return loss, ({"accuracy": accuracy}, stats)

        return loss_fn

    def trainer(
        self, method: Any, which: int, hparams: Mapping[str, Any] | None = None, metrics=None
    ) -> Trainer:
        """The loop with the running statistics beside the parameters, moved as the run's
        ``batch_stats`` mode says (the module)."""
        mode = batch_stats_mode(hparams or {})
        model_state = ModelState(
            keep_if=_at_probe_point if mode == "at_model" else None,
            probe_loss_fn=self.loss_fn(which, train=False) if mode == "one_call" else None,
        )
        return Trainer(method, self.loss_fn(which), self.parallel, metrics, model_state)

    def fit(self, trainer: Trainer, weights: Any, *args: Any, eval_fn: Any, **kwargs: Any):
        res = trainer.fit(
            weights["params"],
            *args,
            eval_fn=lambda p, s: eval_fn({"params": p, "batch_stats": s}),
            state=weights["batch_stats"],
            **kwargs,
        )
        return {"params": res.eval_params, "batch_stats": res.model_state}, res

    # --- methods and rows ------------------------------------------------------------

    def build(self, label: str, hparams: Mapping[str, Any], calls: int = 0):
        """The recipe's method; ``batch_stats`` is the loop's, and ``one_call`` builds
        PROFIT in one-call mode."""
        mode = batch_stats_mode(hparams)
        hp = {k: v for k, v in hparams.items() if k != "batch_stats"}
        if mode == "one_call":
            hp["one_call"] = True
        return super().build(label, hp, calls)

    def extra_rows(self, selections: Mapping[str, protocol.Selection]) -> dict[str, dict]:
        """The recipe's rows and PROFIT's batch-statistics arms at its selected point,
        ``ablation:batch_stats=<mode>``, compared with the best baseline (the ``profit``
        row is the ``every_call`` arm)."""
        rows = super().extra_rows(selections)
        bs = self.cfg.batch_stats
        for mode in bs.arms:
            hp = {
                **selections[bs.method].hparams,
                "batch_stats": batch_stats_mode({"batch_stats": mode}),
            }
            rows[f"ablation:batch_stats={mode}"] = {
                "method": self.cfg.methods[bs.method].method,
                "base": bs.method,
                "hparams": hp,
                "compared": True,
            }
        return rows


def _at_probe_point(opt_state: Any) -> jax.Array:
    from profit_optax import at_probe_point

    return at_probe_point(opt_state)
