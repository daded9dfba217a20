"""profit-optax: PROFIT and fine-tuning baselines as Optax gradient transformations.

PROFIT (Chakravarthy et al., "PROFIT: A Specialized Optimizer for Deep Fine
Tuning", NeurIPS 2025, https://arxiv.org/abs/2412.01930) fine-tunes a converged
model on new data while projecting away the part of each update that would undo
what the model knew. The baselines the experiments compare against (FTP, L2-SP,
masks for freeze-embedding and head-only fine-tuning) live here too.

``profit_optax.registry``, the experiments' table of methods, and
``profit_optax.batch_stats``, batch-norm statistics under PROFIT in Flax NNX (it
needs flax), are imported on first use (``import profit_optax`` loads neither).
"""

from __future__ import annotations

import importlib
from typing import Any

from profit_optax import masks
from profit_optax._src.ftp import FTPState, default_reduce_axes, ftp
from profit_optax._src.l2sp import L2SPState, l2sp
from profit_optax._src.lean import ProfitLeanState, find_first_moment, profit_lean
from profit_optax._src.numerics import ProfitDiagnostics
from profit_optax._src.profit import DEFAULT_REF_SCALE, AutoReferenceState, ProfitState, profit
from profit_optax._src.readers import (
    at_probe_point,
    diagnostics,
    find_profit_lean_state,
    find_profit_state,
    lean_ref_params,
    ref_params,
)
from profit_optax._src.warmup import WarmupThenState, warmup_then

#: The package version; pyproject.toml reads it from here (``[tool.setuptools.dynamic]``).
__version__ = "0.1.0"

__all__ = [
    "DEFAULT_REF_SCALE",
    "AutoReferenceState",
    "FTPState",
    "L2SPState",
    "ProfitDiagnostics",
    "ProfitLeanState",
    "ProfitState",
    "WarmupThenState",
    "at_probe_point",
    "batch_stats",
    "default_reduce_axes",
    "diagnostics",
    "find_first_moment",
    "find_profit_lean_state",
    "find_profit_state",
    "ftp",
    "l2sp",
    "lean_ref_params",
    "masks",
    "profit",
    "profit_lean",
    "ref_params",
    "registry",
    "warmup_then",
]

_LAZY_SUBMODULES = ("batch_stats", "registry")


def __getattr__(name: str) -> Any:
    if name in _LAZY_SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
