"""profit-optax: PROFIT and fine-tuning baselines as Optax gradient transformations.

PROFIT (Chakravarthy et al., "PROFIT: A Specialized Optimizer for Deep Fine
Tuning", NeurIPS 2025, https://arxiv.org/abs/2412.01930) fine-tunes a converged
model on new data while projecting away the part of each update that would undo
what the model knew.
"""

from profit_optax._src.profit import (
    AutoReferenceState,
    ProfitDiagnostics,
    ProfitState,
    diagnostics,
    find_profit_state,
    profit,
    ref_params,
)

__version__ = "0.1.0"

__all__ = [
    "AutoReferenceState",
    "ProfitDiagnostics",
    "ProfitState",
    "diagnostics",
    "find_profit_state",
    "profit",
    "ref_params",
]
