"""Building blocks for the ml_collections configs of the old-task -> new-task experiments.

Each experiment has one config file (``experiments/<model>/configs/<name>.py``)
whose ``get_config()`` starts from :func:`transfer_config` and sets the tasks,
the model and the budgets. Every field is documented here once.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
from ml_collections.config_dict import placeholder


def task(
    dataset: str,
    *,
    classes: Sequence[int] | None = None,
    train_split: str = "train",
    test_split: str = "test",
    max_train_examples: int | None = None,
    max_test_examples: int | None = None,
) -> ml_collections.ConfigDict:
    """One task: a TFDS dataset, optionally restricted to ``classes`` (relabelled 0..k-1).

    ``max_*_examples`` keep a fixed random subset (seed ``subset_seed`` = 0, not
    the run seed) to bound CPU time.
    """
    return ml_collections.ConfigDict(
        {
            "dataset": dataset,
            "classes": tuple(classes) if classes is not None else None,
            "train_split": train_split,
            "test_split": test_split,
            "max_train_examples": (
                max_train_examples if max_train_examples is not None else placeholder(int)
            ),
            "max_test_examples": (
                max_test_examples if max_test_examples is not None else placeholder(int)
            ),
            "subset_seed": 0,
        },
        type_safe=False,
    )


def methods(learning_rates: Mapping[str, float], **extra: Mapping[str, Any]) -> dict[str, dict]:
    """``{label: {"learning_rate": lr, **extra[label]}}`` for ``config.finetune.methods``."""
    return {
        label: {"learning_rate": lr, **extra.get(label, {})} for label, lr in learning_rates.items()
    }


def transfer_config() -> ml_collections.ConfigDict:
    """The fields shared by all transfer experiments, with neutral defaults.

    Fields:
      name: title of the result table and plots.
      data_dir: TFDS data directory (None: ``$TFDS_DATA_DIR`` or ``~/tensorflow_datasets``).
      quick: run a tiny version of the whole pipeline (tests, smoke runs):
        ``experiments.common.transfer.QUICK_DEFAULTS`` then ``quick_overrides``.
      quick_overrides: experiment-specific quick settings (nested, merged last).
      old_task / new_task: see :func:`task`.
      model: model-specific settings (read by the experiment's ``main``).
      augment.crop_padding: zero padding before a random crop back to full size.
      augment.flip: random horizontal flips.
      pretrain: AdamW pretraining on the old task: seed (init, batch order),
        num_steps, batch_size, learning_rate (peak), warmup_steps (linear, then
        cosine decay to 0), weight_decay (kernels only), grad_clip_norm,
        eval_every (0: only at the end).
      finetune.num_steps: update calls (= gradient evaluations) per run, the same
        for every method; must be a multiple of every method's period.
      finetune.batch_size: batch size of each update call.
      finetune.eval_every: evaluation interval for the learning curves (a
        multiple of every method's period; 0: only at the end).
      finetune.seeds: seeds; each sets the batch order and the augmentation,
        identically for all methods (the new head is zero-initialised).
      finetune.methods: label -> hparams for ``experiments.methods.make_method``
        (``method`` names the registry method when it differs from the label).
      finetune.only: comma-separated labels to run (empty: all).
      eval_batch_size: batch size of test-set evaluation.
    """
    config = ml_collections.ConfigDict()
    config.name = ""
    config.data_dir = placeholder(str)
    config.quick = False
    config.quick_overrides = ml_collections.ConfigDict()
    config.old_task = task("cifar10")
    config.new_task = task("cifar100")
    config.model = ml_collections.ConfigDict()
    config.augment = ml_collections.ConfigDict({"crop_padding": 4, "flip": True})
    config.pretrain = ml_collections.ConfigDict(
        {
            "seed": 0,
            "num_steps": 1000,
            "batch_size": 128,
            "learning_rate": 1e-3,
            "warmup_steps": 100,
            "weight_decay": 1e-4,
            "grad_clip_norm": 1.0,
            "eval_every": 0,
        }
    )
    config.finetune = ml_collections.ConfigDict(
        {
            "num_steps": 480,
            "batch_size": 128,
            "eval_every": 0,
            "seeds": (0, 1, 2),
            "methods": {},
            "only": "",
        }
    )
    config.eval_batch_size = 500
    return config
