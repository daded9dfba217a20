"""Every fixed choice of the 2D regression toy, in one place.

The paper (Chakravarthy et al., 2025, Sec. "toy example") fine-tunes an MLP converged on "old" 2D
regression data on "new" data and reports old/new errors for full fine-tuning, head-only
fine-tuning and PROFIT, but does not describe how the data were generated. The choices below are
ours; they are documented in ``docs/toy2d.md`` and kept fixed. Hyperparameters were chosen on the
*validation* splits only (see ``docs/toy2d.md``); test splits are used for reporting only.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Synthetic data (see :mod:`experiments.toy2d.data`)."""

    old_center: tuple[float, float] = (-1.0, 0.0)
    new_center: tuple[float, float] = (1.0, 0.0)
    input_std: float = 0.7
    freq: tuple[float, float] = (2.0, 1.5)
    bump_center: tuple[float, float] = (1.5, 0.0)
    bump_width: float = 0.35
    bump_height: float = 2.0
    label_noise: float = 0.1
    n_train_old: int = 1024
    n_train_new: int = 256
    n_val: int = 512
    n_test: int = 2048


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """MLP ``Dense_0 .. Dense_{k-1}`` (GELU) followed by a linear ``head``."""

    hidden: tuple[int, ...] = (64, 64, 64)


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Adam pretraining on the old task to convergence."""

    learning_rate: float = 3e-3
    final_learning_rate: float = 3e-5  # cosine decay to this value
    steps: int = 6000
    batch_size: int = 64


@dataclasses.dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning on the new task; every method gets the same number of update calls."""

    steps: int = 2400  # update calls = gradient evaluations; rounded up to lcm of Method.period
    batch_size: int = 32
    eval_every: int = 240  # record old/new validation error along the way (for curves)


def _freeze(d: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Mapping[str, Any]]:
    return MappingProxyType({k: MappingProxyType(dict(v)) for k, v in d.items()})


# Hyperparameters passed to ``profit_optax.registry.make_method(name, params, **hparams)``; all
# others are the registry's defaults. Selected by ``python -m experiments.toy2d.sweep`` (grids
# below, tuning seeds 100 and 101, lowest mean new-task validation MSE); the sweep's full output
# is committed in ``experiments/results/toy2d/sweep/``.
DEFAULT_METHODS: Mapping[str, Mapping[str, Any]] = _freeze(
    {
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
)


ADAM_LRS = (1e-4, 3e-4, 1e-3, 3e-3)
SGD_LRS = (1e-3, 3e-3, 1e-2, 3e-2)  # the registry's SGD has heavy-ball momentum 0.9

# Grids searched by ``python -m experiments.toy2d.sweep`` on the tuning seeds' validation splits.
SWEEP_GRIDS: Mapping[str, Mapping[str, tuple[Any, ...]]] = _freeze(
    {
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
)
# Tuning seeds: disjoint from the reporting seeds ``Config.seeds``.
SWEEP_SEEDS: tuple[int, ...] = (100, 101)


@dataclasses.dataclass(frozen=True)
class Config:
    """Full experiment configuration."""

    data: DataConfig = DataConfig()
    model: ModelConfig = ModelConfig()
    pretrain: PretrainConfig = PretrainConfig()
    finetune: FinetuneConfig = FinetuneConfig()
    methods: Mapping[str, Mapping[str, Any]] = dataclasses.field(
        default_factory=lambda: DEFAULT_METHODS
    )
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)


def to_dict(cfg: Config) -> dict[str, Any]:
    """JSON-serialisable view of ``cfg``."""
    out = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    out = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in out.items()}
    out["methods"] = {k: dict(v) for k, v in cfg.methods.items()}
    out["seeds"] = list(cfg.seeds)
    return out


def get_config(quick: bool = False) -> Config:
    """Returns the default configuration, or a tiny one (``quick``) that runs in seconds."""
    cfg = Config()
    if quick:
        cfg = dataclasses.replace(
            cfg,
            data=dataclasses.replace(cfg.data, n_train_old=256, n_val=128, n_test=256),
            model=ModelConfig(hidden=(32, 32)),
            pretrain=dataclasses.replace(cfg.pretrain, steps=300),
            finetune=dataclasses.replace(cfg.finetune, steps=120, eval_every=60),
            seeds=(0,),
        )
    return cfg
