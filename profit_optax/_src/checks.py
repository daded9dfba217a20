"""Argument checks shared by the transformations, with messages that say what to pass."""

from __future__ import annotations

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
            f"{caller}: `params` is required: call `tx.update(grads, state, params)`. PROFIT "
            "needs the current parameters to restore θ_ref at the end of each cycle."
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
