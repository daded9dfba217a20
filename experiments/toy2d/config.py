"""Every fixed choice of the 2D regression toy, in one ml_collections config.

The paper (Chakravarthy et al., 2025, Sec. "toy example") fine-tunes an MLP converged on "old" 2D
regression data on "new" data and reports old/new errors for full fine-tuning, head-only
fine-tuning and PROFIT, but does not describe how the data were generated. The choices below are
ours; they are documented in ``docs/toy2d.md`` and kept fixed. Hyperparameters were chosen on the
*validation* splits only (see ``docs/toy2d.md``); test splits are used for reporting only.

Usage (``--config.<field>=value`` overrides any field)::

    python -m experiments.toy2d --config=experiments/toy2d/config.py
    python -m experiments.toy2d --config=experiments/toy2d/config.py:quick
    python -m experiments.toy2d.sweep --config=experiments/toy2d/config.py
"""

from __future__ import annotations

from typing import Any

import ml_collections

# Hyperparameters passed to ``experiments.methods.make_method(name, params, **hparams)``; all
# others are the registry's defaults. Selected by ``python -m experiments.toy2d.sweep`` (grids
# below, tuning seeds 100 and 101, lowest mean new-task validation MSE); the sweep's full output
# is committed in ``experiments/results/toy2d/sweep/``.
DEFAULT_METHODS: dict[str, dict[str, Any]] = {
    "sgd": {"learning_rate": 1e-2},
    "adam": {"learning_rate": 3e-3},
    "adamw": {"learning_rate": 3e-3},
    "head_only": {"learning_rate": 3e-3},
    "lookahead": {"learning_rate": 3e-3},
    "sam": {"learning_rate": 3e-3},
    "freeze_embed_sgd": {"learning_rate": 1e-2},
    "l2sp": {"learning_rate": 3e-3},
    "ftp": {"learning_rate": 1e-3},
    "profit": {"learning_rate": 3e-3, "ref_learning_rate": 1e-6},
    "profit_sgd": {"learning_rate": 3e-3, "ref_learning_rate": 1e-5},
}


ADAM_LRS = (1e-4, 3e-4, 1e-3, 3e-3)
SGD_LRS = (1e-3, 3e-3, 1e-2, 3e-2)  # the registry's SGD has heavy-ball momentum 0.9

# Grids searched by ``python -m experiments.toy2d.sweep`` on the tuning seeds' validation splits.
SWEEP_GRIDS: dict[str, dict[str, tuple[Any, ...]]] = {
    "sgd": {"learning_rate": SGD_LRS},
    "adam": {"learning_rate": ADAM_LRS},
    "adamw": {"learning_rate": ADAM_LRS},
    "head_only": {"learning_rate": ADAM_LRS},
    "lookahead": {"learning_rate": ADAM_LRS},
    "sam": {"learning_rate": ADAM_LRS},
    "freeze_embed_sgd": {"learning_rate": SGD_LRS},
    "l2sp": {"learning_rate": ADAM_LRS},
    "ftp": {"learning_rate": ADAM_LRS},
    # ref_learning_rate None: the core's automatic, scale-free reference step.
    "profit": {"learning_rate": ADAM_LRS, "ref_learning_rate": (None, 1e-6, 1e-5)},
    "profit_sgd": {"learning_rate": SGD_LRS, "ref_learning_rate": (None, 1e-5, 1e-4)},
}


def get_config(mode: str = "full") -> ml_collections.ConfigDict:
    """The experiment's config; ``mode``: ``full`` (the committed results) or ``quick``
    (a tiny setting that runs in seconds: tests, CI)."""
    if mode not in ("full", "quick"):
        raise ValueError(f"mode must be full or quick, got {mode!r}")
    c = ml_collections.ConfigDict()
    c.mode = mode
    # Synthetic data (see :mod:`experiments.toy2d.data`).
    c.data = ml_collections.ConfigDict(
        {
            "old_center": (-1.0, 0.0),
            "new_center": (1.0, 0.0),
            "input_std": 0.7,
            "freq": (2.0, 1.5),
            "bump_center": (1.5, 0.0),
            "bump_width": 0.35,
            "bump_height": 2.0,
            "label_noise": 0.1,
            "n_train_old": 1024,
            "n_train_new": 256,
            "n_val": 512,
            "n_test": 2048,
        }
    )
    # MLP ``Dense_0 .. Dense_{k-1}`` (GELU) followed by a linear ``head``.
    c.model = ml_collections.ConfigDict({"hidden": (64, 64, 64)})
    # Adam pretraining on the old task to convergence, cosine decay to ``final_learning_rate``.
    c.pretrain = ml_collections.ConfigDict(
        {"learning_rate": 3e-3, "final_learning_rate": 3e-5, "steps": 6000, "batch_size": 64}
    )
    # Fine-tuning on the new task; every method gets the same number of update calls
    # (= gradient evaluations), rounded up to the lcm of the methods' periods; old/new
    # validation errors are recorded every ``eval_every`` calls (for the curves).
    c.finetune = ml_collections.ConfigDict({"steps": 2400, "batch_size": 32, "eval_every": 240})
    c.methods = ml_collections.ConfigDict({k: dict(v) for k, v in DEFAULT_METHODS.items()})
    c.seeds = (0, 1, 2, 3, 4)
    # Tuning seeds of ``python -m experiments.toy2d.sweep``: disjoint from the reporting seeds.
    c.tuning_seeds = (100, 101)
    if mode == "quick":
        c.data.update({"n_train_old": 256, "n_val": 128, "n_test": 256})
        c.model.hidden = (32, 32)
        c.pretrain.steps = 300
        c.finetune.update({"steps": 120, "eval_every": 60})
        c.seeds = (0,)
    return c
