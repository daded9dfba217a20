"""Argument checks shared by the transformations, with messages that say what to pass."""

from __future__ import annotations

import math
import numbers
from typing import Any

import jax
import jax.numpy as jnp
import optax

from profit_optax._src.numerics import PROJECTIONS


def check_transformation(tx: Any, name: str, caller: str) -> None:
    """Raises TypeError unless ``tx`` is a gradient transformation (has ``init`` and
    ``update``); ``name`` is the argument, ``caller`` the function, for the message."""
    if isinstance(tx, optax.GradientTransformation | optax.GradientTransformationExtraArgs):
        return
    if callable(getattr(tx, "init", None)) and callable(getattr(tx, "update", None)):
        return
    raise TypeError(
        f"{caller}: `{name}` must be an optax.GradientTransformation (an object with "
        f"`init` and `update`), got {type(tx).__name__}: {tx!r}. Did you pass a "
        "learning rate or a factory such as `optax.adam` instead of `optax.adam(1e-4)`?"
    )


def check_number(
    value: Any,
    name: str,
    caller: str,
    *,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """Returns ``value`` as a float after checking that it is a real number (not a bool)
    in the interval from ``low`` to ``high`` (each end included unless ``*_open``).

    Raises:
      TypeError: for a non-number.
      ValueError: for a number outside the interval (or NaN).
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(
            f"{caller}: `{name}` must be a number, got {type(value).__name__}: {value!r}."
        )
    x = float(value)
    above = low < x if low_open else low <= x
    below = x < high if high_open else x <= high
    if not (above and below):
        if math.isinf(high):
            wanted = f"{'>' if low_open else '>='} {low:g}"
        else:
            wanted = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{caller}: `{name}` must be {wanted}, got {value!r}.")
    return x


def check_projection(projection: Any, caller: str) -> None:
    if projection not in PROJECTIONS:
        raise ValueError(
            f"{caller}: `projection` must be one of {PROJECTIONS}, got {projection!r}."
        )


def check_trees(grads: optax.Updates, params: optax.Params | None, caller: str) -> None:
    """Raises ValueError for ``params=None`` or gradient and parameter trees that differ
    in structure or shapes."""
    if params is None:
        raise ValueError(
            f"{caller}: `params` is required: call `tx.update(grads, state, params)` (the "
            "update depends on the current parameters)."
        )
    g_def = jax.tree.structure(grads)
    p_def = jax.tree.structure(params)
    if g_def != p_def:  # type: ignore[operator]  # no stub for jaxlib's PyTreeDef
        raise ValueError(
            f"{caller}: the gradient tree and the params tree differ.\n"
            f"  gradients: {g_def}\n  params:    {p_def}"
        )
    for (path, g), p in zip(
        jax.tree_util.tree_leaves_with_path(grads), jax.tree.leaves(params), strict=True
    ):
        if jnp.shape(g) != jnp.shape(p):
            raise ValueError(
                f"{caller}: gradient and parameter shapes differ at "
                f"{jax.tree_util.keystr(path)}: {jnp.shape(g)} vs {jnp.shape(p)}."
            )
