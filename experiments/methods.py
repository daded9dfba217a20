"""The table of fine-tuning methods compared in the experiments (the registry).

Every method is one entry of ``_METHODS``: its hyper-parameters with defaults,
the masks it needs, and a builder returning the optax transformation plus how
the training loop stores, differentiates and evaluates the parameters. Every
method does exactly one gradient evaluation per ``update`` call (SAM in
transparent mode, PROFIT in alternating mode), so equal numbers of update calls
mean equal gradient budgets; end runs on a multiple of :attr:`Method.period`.
The one exception is ``profit`` with ``one_call=True`` (:attr:`Method.grads_per_call`
gradients per call, the whole cycle; its ``update`` takes PROFIT's ``grad_fn``).

The training loop for any method::

  method = make_method("lookahead", params, learning_rate=1e-3)
  stored = method.init_params(params)
  opt_state = method.tx.init(stored)
  for batch in batches:  # len(batches) a multiple of method.period
      grads = jax.grad(loss)(method.grad_params(stored), batch)
      updates, opt_state = method.tx.update(grads, opt_state, stored)
      stored = method.apply(stored, updates)
  final = method.eval_params(stored, opt_state)
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import optax.contrib

from profit_optax import DEFAULT_REF_SCALE, ftp, l2sp, profit, ref_params, warmup_then
from profit_optax._src.masks import resolve_static_mask
from profit_optax.masks import invert_mask

Params = Any
Stored = Any

__all__ = [
    "Method",
    "available_methods",
    "make_method",
    "memory_table",
    "method_bytes_per_param",
    "method_summary",
    "plain_method",
    "state_bytes_per_param",
    "warmup_kwargs",
    "warmup_steps",
]


def _identity(x: Any) -> Any:
    return x


def _stored_is_params(stored: Stored, opt_state: optax.OptState) -> Params:
    del opt_state
    return stored


@dataclasses.dataclass(frozen=True)
class Method:
    """A fine-tuning method ready for the generic training loop.

    Attributes:
      name: registry name.
      hparams: resolved hyper-parameters (defaults filled in), read-only.
      tx: the optax transformation; ``tx.init`` takes ``init_params(params)``.
      period: update calls per full cycle (1 for plain optimizers, ``sync_period``
        for Lookahead and SAM, ``n_ref + 1`` for PROFIT). End runs on a multiple.
      init_params_fn: ``params -> stored``, what the loop keeps.
      grad_params_fn: ``stored -> params`` at which to take the gradient.
      eval_params_fn: ``(stored, opt_state) -> params`` to evaluate and report.
      grads_per_step: gradient evaluations per step of the optimizer that a
        learning-rate schedule counts (``n_ref + 1`` for PROFIT, ``sync_period``
        for SAM, 1 otherwise), so that a budget of ``B`` update calls is
        ``B // grads_per_step`` schedule steps.
      grads_per_call: gradient evaluations per update call: 1, but ``n_ref + 1`` for
        PROFIT in one-call mode, whose ``tx.update`` takes ``grad_fn`` (the loop passes
        it, with ``grads_per_call`` batches per call; ``experiments.common.train``).
    """

    name: str
    hparams: Mapping[str, Any]
    tx: optax.GradientTransformation
    period: int = 1
    init_params_fn: Callable[[Params], Stored] = _identity
    grad_params_fn: Callable[[Stored], Params] = _identity
    eval_params_fn: Callable[[Stored, optax.OptState], Params] = _stored_is_params
    grads_per_step: int = 1
    grads_per_call: int = 1

    def init_params(self, params: Params) -> Stored:
        """What the training loop stores (``optax.LookaheadParams`` for Lookahead)."""
        return self.init_params_fn(params)

    def grad_params(self, stored: Stored) -> Params:
        """Where to take the gradient (the fast weights for Lookahead)."""
        return self.grad_params_fn(stored)

    def eval_params(self, stored: Stored, opt_state: optax.OptState) -> Params:
        """The model to evaluate (slow weights for Lookahead, θ_ref for PROFIT)."""
        return self.eval_params_fn(stored, opt_state)

    def apply(self, stored: Stored, updates: optax.Updates) -> Stored:
        """``optax.apply_updates`` on the stored pytree."""
        return optax.apply_updates(stored, updates)


@dataclasses.dataclass(frozen=True)
class _Built:
    tx: optax.GradientTransformation
    period: int = 1
    init_params_fn: Callable[[Params], Stored] = _identity
    grad_params_fn: Callable[[Stored], Params] = _identity
    eval_params_fn: Callable[[Stored, optax.OptState], Params] = _stored_is_params
    grads_per_step: int = 1
    grads_per_call: int = 1


@dataclasses.dataclass(frozen=True)
class _Spec:
    """One registry entry: ``build(hparams, masks) -> _Built``."""

    summary: str
    defaults: Mapping[str, Any]
    build: Callable[[dict[str, Any], dict[str, Any]], _Built]
    masks: tuple[str, ...] = ()
    choices: Mapping[str, tuple[Any, ...]] = dataclasses.field(default_factory=dict)
    #: masks that may select no parameter (L2-SP's head_mask: a model without a new head).
    empty_ok: tuple[str, ...] = ()


_REQUIRED = object()  # marks a hyper-parameter without default


# --- Builders ---------------------------------------------------------------------


def _sgd(hp: dict[str, Any]) -> optax.GradientTransformation:
    return optax.sgd(hp["learning_rate"], momentum=hp["momentum"] or None, nesterov=hp["nesterov"])


def _adam(hp: dict[str, Any]) -> optax.GradientTransformation:
    return optax.adam(hp["learning_rate"], b1=hp["b1"], b2=hp["b2"], eps=hp["eps"])


def _adamw(hp: dict[str, Any]) -> optax.GradientTransformation:
    return optax.adamw(
        hp["learning_rate"],
        b1=hp["b1"],
        b2=hp["b2"],
        eps=hp["eps"],
        weight_decay=hp["weight_decay"],
    )


def _rmsprop(hp: dict[str, Any]) -> optax.GradientTransformation:
    # PyTorch's RMSprop: eps added outside the square root.
    return optax.rmsprop(hp["learning_rate"], decay=hp["decay"], eps=hp["eps"], eps_in_sqrt=False)


def _adan(hp: dict[str, Any]) -> optax.GradientTransformation:
    return optax.adan(
        hp["learning_rate"],
        b1=hp["b1"],
        b2=hp["b2"],
        b3=hp["b3"],
        eps=hp["eps"],
        weight_decay=hp["weight_decay"],
    )


_INNER = {
    "sgd": lambda lr: optax.sgd(lr, momentum=0.9),
    "adam": lambda lr: optax.adam(lr),
    "adamw": lambda lr: optax.adamw(lr, weight_decay=1e-4),
    "rmsprop": lambda lr: _rmsprop({"learning_rate": lr, "decay": 0.99, "eps": 1e-8}),
}


def _head_only(hp: dict[str, Any], m: dict[str, Any]) -> _Built:
    inner = _INNER[hp["inner"]](hp["learning_rate"])
    return _Built(optax.selective_transform(inner, freeze_mask=invert_mask(m["head_mask"])))


def _lookahead(hp: dict[str, Any], m: dict[str, Any]) -> _Built:
    del m
    tx = optax.lookahead(
        optax.adam(hp["learning_rate"]),
        sync_period=hp["sync_period"],
        slow_step_size=hp["slow_step_size"],
    )
    return _Built(
        tx,
        period=hp["sync_period"],
        init_params_fn=optax.LookaheadParams.init_synced,
        grad_params_fn=lambda stored: stored.fast,
        eval_params_fn=lambda stored, opt_state: stored.slow,
    )


def _sam_eval(stored: Params, opt_state: Any) -> Params:
    # Transparent SAM: after an adversarial call (steps_since_sync > 0) the params
    # are the perturbed point and SAMState.cache holds the real params; after the
    # outer call (steps_since_sync == 0) the params are the real ones.
    synced = opt_state.steps_since_sync == 0
    return jax.tree.map(lambda p, c: jnp.where(synced, p, c), stored, opt_state.cache)


def _sam(hp: dict[str, Any], m: dict[str, Any]) -> _Built:
    del m
    adv = optax.chain(optax.contrib.normalize(), optax.sgd(hp["rho"]))
    tx = optax.contrib.sam(
        optax.adam(hp["learning_rate"]), adv, sync_period=hp["sync_period"], opaque_mode=False
    )
    return _Built(
        tx, period=hp["sync_period"], eval_params_fn=_sam_eval, grads_per_step=hp["sync_period"]
    )


def _freeze_embed_sgd(hp: dict[str, Any], m: dict[str, Any]) -> _Built:
    return _Built(optax.selective_transform(_sgd(hp), freeze_mask=m["embed_mask"]))


def _l2sp(hp: dict[str, Any], m: dict[str, Any]) -> _Built:
    penalty = l2sp(hp["alpha"], hp["beta"], head_mask=m["head_mask"])
    return _Built(optax.chain(penalty, optax.adam(hp["learning_rate"])))


def _ftp(hp: dict[str, Any], m: dict[str, Any]) -> _Built:
    tx = ftp(optax.adam(hp["learning_rate"]), k=hp["k"], mu=hp["mu"], exclude_mask=m["head_mask"])
    return _Built(tx)


def _reference_learning_rate(hp: dict[str, Any]) -> Any:
    """λ_ref from ``ref_learning_rate`` or ``ref_ratio`` (λ_main / λ_ref); None: automatic."""
    ref_lr, ratio = hp["ref_learning_rate"], hp["ref_ratio"]
    if ratio is None:
        return ref_lr
    if ref_lr is not None:
        raise ValueError("give ref_learning_rate or ref_ratio, not both.")
    if not (isinstance(ratio, int | float) and ratio > 0):
        raise ValueError(f"ref_ratio must be a positive number, got {ratio!r}.")
    lr = hp["learning_rate"]
    # A schedule keeps the ratio at every step (the reference count equals the main
    # count when n_ref = 1; with n_ref > 1 it runs n_ref times faster).
    return (lambda count: lr(count) / ratio) if callable(lr) else lr / ratio


_MAIN = {"adam": _adam, "adamw": _adamw, "sgd": _sgd, "rmsprop": _rmsprop}


def _profit_tx(hp: dict[str, Any], main: str) -> optax.GradientTransformation:
    ref_lr = _reference_learning_rate(hp)
    return profit(
        _MAIN[main](hp),
        None if ref_lr is None else optax.sgd(ref_lr),
        n_ref=hp["n_ref"],
        projection=hp["projection"],
        ref_scale=hp["ref_scale"],
        one_call=hp.get("one_call", False),
    )


def _profit(hp: dict[str, Any], m: dict[str, Any], main: str = "adam") -> _Built:
    del m
    grads = hp["n_ref"] + 1
    if hp.get("one_call", False):  # one call = one whole cycle, n_ref + 1 gradients
        return _Built(
            _profit_tx(hp, main),
            eval_params_fn=ref_params,
            grads_per_step=grads,
            grads_per_call=grads,
        )
    return _Built(
        _profit_tx(hp, main), period=grads, eval_params_fn=ref_params, grads_per_step=grads
    )


def warmup_steps(fraction: float, calls: int, n_ref: int = 1) -> int:
    """``profit_warmup``'s ``warmup_steps`` for a ``fraction`` of ``calls`` update calls.

    Rounded to whole PROFIT cycles (``n_ref + 1`` calls), as ``warmup_steps`` must be.

    Example:
      >>> warmup_steps(0.1, 2106)  # 210.6 calls -> 105 cycles of 2
      210
      >>> warmup_steps(0.1, 2106, n_ref=2)
      210
      >>> warmup_steps(0.1, 1056, n_ref=4)
      105
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"warmup fraction must be in [0, 1], got {fraction!r}")
    period = n_ref + 1
    return round(fraction * calls / period) * period


def warmup_kwargs(name: str, fraction: float, calls: int, n_ref: int = 1) -> dict[str, int]:
    """``{"warmup_steps": warmup_steps(fraction, calls, n_ref)}`` for a method that warms up
    (one that takes ``warmup_steps``: ``profit_warmup``, ``profit_adamw_warmup``), else ``{}``.

    Example:
      >>> warmup_kwargs("profit_warmup", 0.1, 150), warmup_kwargs("adamw", 0.1, 150)
      ({'warmup_steps': 16}, {})
    """
    if "warmup_steps" not in _get_spec(name).defaults:
        return {}
    return {"warmup_steps": warmup_steps(fraction, calls, n_ref)}


def _profit_warmup(hp: dict[str, Any], m: dict[str, Any], main: str = "adam") -> _Built:
    del m
    period = hp["n_ref"] + 1
    warmup = hp["warmup_steps"]
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0 or warmup % period:
        raise ValueError(
            f"profit_warmup: warmup_steps must be an int >= 0 and a multiple of n_ref + 1 = "
            f"{period} (PROFIT's cycles then end with the run), got {warmup!r}."
        )
    tx = warmup_then(_adamw(hp), _profit_tx(hp, main), warmup)
    return _Built(tx, period=period, eval_params_fn=ref_params, grads_per_step=period)


_ADAM_DEFAULTS = {"learning_rate": _REQUIRED, "b1": 0.9, "b2": 0.999, "eps": 1e-8}
_SGD_DEFAULTS = {"learning_rate": _REQUIRED, "momentum": 0.9, "nesterov": False}
_RMSPROP_DEFAULTS = {"learning_rate": _REQUIRED, "decay": 0.99, "eps": 1e-8}
_PROFIT_DEFAULTS = {
    "n_ref": 1,
    "ref_learning_rate": None,
    "ref_ratio": None,
    "ref_scale": DEFAULT_REF_SCALE,
    "projection": "global",
}
_PROFIT_CHOICES = {"projection": ("global", "per_tensor")}

_METHODS: dict[str, _Spec] = {
    "sgd": _Spec(
        "SGD with heavy-ball momentum: m = mu*m + g; theta -= lr*m.",
        _SGD_DEFAULTS,
        lambda hp, m: _Built(_sgd(hp)),
    ),
    "adam": _Spec(
        "Adam (Kingma & Ba, 2015).",
        _ADAM_DEFAULTS,
        lambda hp, m: _Built(_adam(hp)),
    ),
    "adamw": _Spec(
        "AdamW (Loshchilov & Hutter, 2019): Adam + decoupled decay lr*wd*theta.",
        {**_ADAM_DEFAULTS, "weight_decay": 1e-4},
        lambda hp, m: _Built(_adamw(hp)),
    ),
    "rmsprop": _Spec(
        "RMSProp (Tieleman & Hinton, 2012) with PyTorch's defaults: alpha=0.99, eps=1e-8 "
        "outside the square root.",
        _RMSPROP_DEFAULTS,
        lambda hp, m: _Built(_rmsprop(hp)),
    ),
    "adan": _Spec(
        "Adan (Xie et al., 2022), optax.adan with its defaults.",
        {
            "learning_rate": _REQUIRED,
            "b1": 0.98,
            "b2": 0.92,
            "b3": 0.99,
            "eps": 1e-8,
            "weight_decay": 0.0,
        },
        lambda hp, m: _Built(_adan(hp)),
    ),
    "head_only": _Spec(
        "Train the head only (inner optimizer `inner`); every other leaf frozen.",
        {"learning_rate": _REQUIRED, "inner": "adam"},
        _head_only,
        masks=("head_mask",),
        choices={"inner": tuple(_INNER)},
    ),
    "lookahead": _Spec(
        "Lookahead(Adam) (Zhang et al., 2019): every k fast steps, "
        "slow += alpha*(fast - slow); fast = slow.",
        {"learning_rate": _REQUIRED, "sync_period": 6, "slow_step_size": 0.5},
        _lookahead,
    ),
    "sam": _Spec(
        "SAM(Adam) (Foret et al., 2021), transparent mode: ascent step rho*g/norm(g), "
        "then Adam on the gradient there, from the cached real params.",
        {"learning_rate": _REQUIRED, "rho": 0.05, "sync_period": 2},
        _sam,
    ),
    "freeze_embed_sgd": _Spec(
        "SGD with momentum, embedding layer frozen (Kumar et al., ICLR 2024).",
        _SGD_DEFAULTS,
        _freeze_embed_sgd,
        masks=("embed_mask",),
    ),
    "l2sp": _Spec(
        "L2-SP (Li et al., 2018) + Adam: g += alpha*(theta - theta0) (body), beta*theta (head; "
        "an all-False head_mask: no head, every leaf pulled toward theta0).",
        {"learning_rate": _REQUIRED, "alpha": 0.1, "beta": 0.01},
        _l2sp,
        masks=("head_mask",),
        empty_ok=("head_mask",),
    ),
    "ftp": _Spec(
        "FTP(Adam) (Tian et al., NeurIPS 2023): per-tensor learned row-L1 radius around "
        "theta0; head excluded.",
        {"learning_rate": _REQUIRED, "k": 1.0, "mu": 1e-2},
        _ftp,
        masks=("head_mask",),
    ),
    "profit": _Spec(
        "PROFIT(Adam) (Chakravarthy et al., NeurIPS 2025): n_ref reference steps, then the "
        "main gradient projected off the reference displacement when they conflict.",
        {**_ADAM_DEFAULTS, **_PROFIT_DEFAULTS, "one_call": False},
        _profit,
        choices={**_PROFIT_CHOICES, "one_call": (False, True)},
    ),
    "profit_sgd": _Spec(
        "PROFIT(SGD) (Chakravarthy et al., NeurIPS 2025) with SGD + heavy-ball momentum as the "
        "main optimizer (Adam rescales the small residual left by a projection into full-size "
        "steps; SGD does not).",
        {**_SGD_DEFAULTS, **_PROFIT_DEFAULTS},
        lambda hp, m: _profit(hp, m, main="sgd"),
        choices=_PROFIT_CHOICES,
    ),
    "profit_rmsprop": _Spec(
        "PROFIT(RMSProp) (Chakravarthy et al., NeurIPS 2025), the paper's 2D-toy optimizer: "
        "RMSProp with PyTorch's defaults as the main optimizer.",
        {**_RMSPROP_DEFAULTS, **_PROFIT_DEFAULTS},
        lambda hp, m: _profit(hp, m, main="rmsprop"),
        choices=_PROFIT_CHOICES,
    ),
    "profit_adamw": _Spec(
        "PROFIT(AdamW) (Chakravarthy et al., NeurIPS 2025): AdamW as the main optimizer, the "
        "paper's transformer setting (DriveLM, its QLoRA cost table).",
        {**_ADAM_DEFAULTS, "weight_decay": 1e-4, **_PROFIT_DEFAULTS},
        lambda hp, m: _profit(hp, m, main="adamw"),
        choices=_PROFIT_CHOICES,
    ),
    "profit_warmup": _Spec(
        "PROFIT (warmup) (Chakravarthy et al., NeurIPS 2025, Table 3): AdamW for the first "
        "warmup_steps update calls, then PROFIT(Adam) from the warmed-up parameters.",
        {
            **_ADAM_DEFAULTS,
            "weight_decay": 1e-4,
            "warmup_steps": _REQUIRED,
            **_PROFIT_DEFAULTS,
        },
        _profit_warmup,
        choices=_PROFIT_CHOICES,
    ),
    "profit_adamw_warmup": _Spec(
        "PROFIT(AdamW) (warmup): AdamW for the first warmup_steps update calls, then "
        "PROFIT(AdamW) from the warmed-up parameters (the paper's warm-up, AdamW throughout).",
        {
            **_ADAM_DEFAULTS,
            "weight_decay": 1e-4,
            "warmup_steps": _REQUIRED,
            **_PROFIT_DEFAULTS,
        },
        lambda hp, m: _profit_warmup(hp, m, main="adamw"),
        choices=_PROFIT_CHOICES,
    ),
}


# --- Public API -------------------------------------------------------------------


def available_methods() -> list[str]:
    """Names accepted by :func:`make_method`, in registry order.

    Example:
      >>> from experiments.methods import available_methods
      >>> available_methods()[:3]
      ['sgd', 'adam', 'adamw']
    """
    return list(_METHODS)


def method_summary(name: str) -> str:
    """One-line description (formula and reference) of a registered method."""
    return _get_spec(name).summary


def _get_spec(name: str) -> _Spec:
    if name not in _METHODS:
        raise ValueError(f"unknown method {name!r}; available methods: {available_methods()}.")
    return _METHODS[name]


def _check_mask(mask: Any, params: Params, what: str, method: str, empty_ok: bool = False) -> Any:
    if callable(mask):
        mask = mask(params)
    flags = resolve_static_mask(mask, params, f"{method}: {what}")
    if flags is None:  # make_method checks for a missing mask before calling this
        raise ValueError(f"{method}: requires {what}=.")
    if not any(flags) and not empty_ok:
        raise ValueError(f"{method}: {what} selects no parameter.")
    if all(flags):
        raise ValueError(f"{method}: {what} selects every parameter.")
    return mask


def make_method(
    name: str,
    params: Params,
    *,
    head_mask: Any = None,
    embed_mask: Any = None,
    **hparams: Any,
) -> Method:
    """Builds a registered fine-tuning method.

    Args:
      name: one of :func:`available_methods`.
      params: the parameters to fine-tune (arrays or ``jax.ShapeDtypeStruct``), used
        to check the masks.
      head_mask: pytree of bools like ``params`` (``True`` = head leaf), e.g. from
        :func:`profit_optax.masks.head_mask`. Required by ``head_only``, ``l2sp``
        and ``ftp``; ignored by the other methods, so a loop may pass it to all.
      embed_mask: pytree of bools (``True`` = embedding leaf), e.g. from
        :func:`profit_optax.masks.embedding_mask`. Required by ``freeze_embed_sgd``.
      **hparams: hyper-parameters; ``learning_rate`` (a float or an optax
        schedule) is required by every method, the others have defaults.

    Returns:
      A :class:`Method`.

    Raises:
      ValueError: unknown method, unknown or missing hyper-parameter, invalid
        choice, or missing / empty mask; the message lists the valid options.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from experiments.methods import make_method
      >>> params = {"w": jnp.ones(3)}
      >>> method = make_method("lookahead", params, learning_rate=0.1)
      >>> method.hparams["sync_period"], method.period
      (6, 6)
      >>> stored = method.init_params(params)
      >>> state = method.tx.init(stored)
      >>> grads = jax.grad(lambda p: jnp.sum(p["w"] ** 2))(method.grad_params(stored))
      >>> updates, state = method.tx.update(grads, state, stored)
      >>> stored = method.apply(stored, updates)
      >>> method.eval_params(stored, state)["w"]  # slow weights: not synced yet
      Array([1., 1., 1.], dtype=float32)
    """
    spec = _get_spec(name)
    unknown = sorted(set(hparams) - set(spec.defaults))
    if unknown:
        raise ValueError(
            f"{name}: unknown hyper-parameter(s) {unknown}; valid: {sorted(spec.defaults)}."
        )
    resolved = {k: hparams.get(k, v) for k, v in spec.defaults.items()}
    missing = [k for k, v in resolved.items() if v is _REQUIRED]
    if missing:
        raise ValueError(
            f"{name}: missing required hyper-parameter(s) {missing}; "
            f"valid: {sorted(spec.defaults)}."
        )
    for key, allowed in spec.choices.items():
        if resolved[key] not in allowed:
            raise ValueError(
                f"{name}: {key} must be one of {list(allowed)}, got {resolved[key]!r}."
            )
    lr = resolved["learning_rate"]
    if not callable(lr) and not (isinstance(lr, int | float) and lr > 0):
        raise ValueError(
            f"{name}: learning_rate must be a positive float or a schedule, got {lr!r}."
        )

    given = {"head_mask": head_mask, "embed_mask": embed_mask}
    masks = {}
    for what in spec.masks:
        if given[what] is None:
            helper = "head_mask" if what == "head_mask" else "embedding_mask"
            needing = {n: list(s.masks) for n, s in _METHODS.items() if s.masks}
            raise ValueError(
                f"{name}: requires {what}= (build it with profit_optax.masks.{helper}(params)); "
                f"methods needing masks: {needing}."
            )
        masks[what] = _check_mask(given[what], params, what, name, what in spec.empty_ok)

    built = spec.build(dict(resolved), masks)
    return Method(
        name=name,
        hparams=MappingProxyType(resolved),
        tx=built.tx,
        period=built.period,
        init_params_fn=built.init_params_fn,
        grad_params_fn=built.grad_params_fn,
        eval_params_fn=built.eval_params_fn,
        grads_per_step=built.grads_per_step,
        grads_per_call=built.grads_per_call,
    )


def plain_method(name: str, tx: optax.GradientTransformation) -> Method:
    """A plain optax optimizer as a :class:`Method`: no hyper-parameters, period 1, the
    stored pytree is the parameters (e.g. the experiments' pretraining loops).

    Example:
      >>> import optax
      >>> method = plain_method("pretrain_adam", optax.adam(1e-3))
      >>> method.name, dict(method.hparams), method.period, method.grad_params({"w": 1.0})
      ('pretrain_adam', {}, 1, {'w': 1.0})
    """
    return Method(name=name, hparams=MappingProxyType({}), tx=tx)


# --- Memory accounting --------------------------------------------------------------


def _tree_bytes(tree: Any) -> int:
    return sum(
        math.prod(np.shape(x)) * np.dtype(x.dtype).itemsize
        for x in jax.tree.leaves(tree)
        if hasattr(x, "dtype")
    )


def _tree_size(tree: Any) -> int:
    return sum(math.prod(np.shape(x)) for x in jax.tree.leaves(tree))


def state_bytes_per_param(tx: optax.GradientTransformation, params: Params) -> float:
    """Bytes of optimizer state per parameter: array bytes of ``tx.init(params)`` / #params.

    Uses ``jax.eval_shape``, so nothing is allocated and ``params`` may hold
    ``jax.ShapeDtypeStruct`` leaves.

    Example:
      >>> import jax.numpy as jnp, optax
      >>> params = {"w": jnp.zeros((1000,))}
      >>> state_bytes_per_param(optax.sgd(0.1, momentum=0.9), params)
      4.0
      >>> round(state_bytes_per_param(optax.adam(0.1), params), 3)  # m, v, int32 count
      8.004
    """
    n = _tree_size(params)
    if n == 0:
        raise ValueError("params has no array leaves.")
    return _tree_bytes(jax.eval_shape(tx.init, params)) / n


def method_bytes_per_param(method: Method, params: Params) -> float:
    """Extra bytes per parameter a method keeps beyond the params themselves.

    Counts the optimizer state of ``method.tx.init(method.init_params(params))``
    plus what the stored pytree holds beyond ``params`` (the slow weights of
    Lookahead). Gradients and activations are not counted.
    """
    n = _tree_size(params)
    if n == 0:
        raise ValueError("params has no array leaves.")
    stored = jax.eval_shape(method.init_params, params)
    state = jax.eval_shape(method.tx.init, stored)
    return (_tree_bytes(state) + _tree_bytes(stored) - _tree_bytes(params)) / n


def memory_table(
    params: Params,
    *,
    head_mask: Any,
    embed_mask: Any,
    names: list[str] | None = None,
) -> str:
    """Markdown table of :func:`method_bytes_per_param` for registered methods.

    Args:
      params: parameter pytree (arrays or ``jax.ShapeDtypeStruct``; nothing is allocated).
      head_mask: head mask, as for :func:`make_method`.
      embed_mask: embedding mask, as for :func:`make_method`.
      names: methods to include (default: all, default hyper-parameters).

    Returns:
      A markdown table with one row per method: name, extra bytes per parameter,
      and the one-line summary.
    """
    rows = [
        "| method | extra optimizer memory (bytes/param) | formula / reference |",
        "|---|---|---|",
    ]
    for name in names or available_methods():
        required = {"warmup_steps": 0} if "warmup_steps" in _get_spec(name).defaults else {}
        method = make_method(
            name,
            params,
            head_mask=head_mask,
            embed_mask=embed_mask,
            learning_rate=1e-3,
            **required,
        )
        extra = method_bytes_per_param(method, params)
        rows.append(f"| `{name}` | {extra:.2f} | {method_summary(name)} |")
    return "\n".join(rows) + "\n"
