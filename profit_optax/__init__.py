"""profit-optax: PROFIT and fine-tuning baselines as Optax gradient transformations.

PROFIT (Chakravarthy et al., "PROFIT: A Specialized Optimizer for Deep Fine
Tuning", NeurIPS 2025, https://arxiv.org/abs/2412.01930) fine-tunes a converged
model on new data while projecting away the part of each update that would undo
what the model knew. The baselines the experiments compare against (FTP, L2-SP,
masks for freeze-embedding and head-only fine-tuning) live here too.

``profit_optax.batch_stats`` (batch-norm statistics under PROFIT in Flax NNX; it needs
flax) is imported on first use: ``import profit_optax`` does not load it.
"""

from profit_optax import masks
from profit_optax._src.ftp import FTPState, default_reduce_axes, ftp
from profit_optax._src.l2sp import L2SPState, l2sp
from profit_optax._src.lean import ProfitLeanState, profit_lean
from profit_optax._src.numerics import ProfitDiagnostics
from profit_optax._src.profit import DEFAULT_REF_SCALE, AutoReferenceState, ProfitState, profit
from profit_optax._src.readers import at_probe_point, diagnostics, ref_params
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
    "ftp",
    "l2sp",
    "masks",
    "profit",
    "profit_lean",
    "ref_params",
    "warmup_then",
]


def __getattr__(name: str) -> object:
    """``profit_optax.batch_stats``, imported on first use (it imports flax)."""
    if name == "batch_stats":
        import importlib

        return importlib.import_module(f"{__name__}.batch_stats")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    """The public API, ``__all__`` and ``__version__``: what ``dir(profit_optax)`` and tab
    completion show (Sphinx's autosummary follows ``__all__`` only if ``dir()`` lists it)."""
    return sorted([*__all__, "__all__", "__version__"])
