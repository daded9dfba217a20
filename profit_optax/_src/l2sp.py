"""L2-SP: L2 penalty toward the starting point, as an Optax gradient transformation.

References:
  Li, Grandvalet, Davoine, `Explicit Inductive Bias for Transfer Learning with
  Convolutional Networks <https://arxiv.org/abs/1802.01483>`_, ICML 2018.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from profit_optax._src.checks import check_number, check_trees
from profit_optax._src.masks import resolve_static_mask
from profit_optax._src.numerics import acc_dtype


class L2SPState(NamedTuple):
    """State of the :class:`optax.GradientTransformation` returned by :func:`l2sp`.

    Attributes:
      anchor: Starting point ``theta0`` of the non-head leaves, copied from
        ``init``'s params (param dtype). Head leaves hold an
        :class:`optax.MaskedNode`: they are decayed toward 0 and need no anchor.
    """

    anchor: optax.Params


def l2sp(
    alpha: float,
    beta: float = 0.0,
    *,
    head_mask: Any | Callable[[optax.Params], Any] | None = None,
) -> optax.GradientTransformation:
    r"""Adds the gradient of the L2-SP penalty to the incoming gradient.

    The penalty of Li et al. (2018) is

    .. math::

      \Omega(\theta) = \frac{\alpha}{2} \|\theta_S - \theta_S^0\|^2
                     + \frac{\beta}{2} \|\theta_{\bar S}\|^2,

    where :math:`S` are the leaves with a pre-trained value (``head_mask`` False),
    :math:`\bar S` the new head (``head_mask`` True) and :math:`\theta^0` the
    params given to ``init``. This transformation returns
    ``updates + alpha * (params - theta0)`` on :math:`S` and
    ``updates + beta * params`` on :math:`\bar S`, i.e. the gradient of
    ``loss + Omega``. Place it *before* the base optimizer, e.g.
    ``optax.chain(l2sp(0.1, 0.01, head_mask=mask), optax.adam(lr))``, so that the
    penalty goes through the optimizer's preconditioning as in the paper.

    Memory: one param-sized buffer (the anchor) for the non-head leaves.

    Args:
      alpha: strength of the pull toward the starting point, ``alpha >= 0``.
      beta: strength of the plain weight decay on the head, ``beta >= 0``.
      head_mask: pytree of bools with the structure of the params (or a callable
        ``params -> mask``); ``True`` marks head leaves. ``None``: no head, every
        leaf is pulled toward its starting point.

    Returns:
      A :class:`optax.GradientTransformation`; ``update`` requires ``params``.

    Raises:
      TypeError: if ``alpha`` or ``beta`` is not a number, or a mask leaf not a bool.
      ValueError: if ``alpha`` or ``beta`` is negative; for a mask that does not match
        the params; at ``update`` for ``params=None`` or gradient and parameter trees
        that differ.

    Example:
      >>> import jax.numpy as jnp, profit_optax
      >>> params = {"w": jnp.array([1.0, 2.0]), "head": jnp.array([3.0])}
      >>> tx = profit_optax.l2sp(0.5, 0.1, head_mask={"w": False, "head": True})
      >>> state = tx.init(params)
      >>> moved = {"w": jnp.array([2.0, 2.0]), "head": jnp.array([3.0])}
      >>> zero = {"w": jnp.zeros(2), "head": jnp.zeros(1)}
      >>> updates, state = tx.update(zero, state, moved)
      >>> updates["w"], updates["head"]
      (Array([0.5, 0. ], dtype=float32), Array([0.3], dtype=float32))

    References:
      Li, Grandvalet, Davoine, `Explicit Inductive Bias for Transfer Learning with
      Convolutional Networks <https://arxiv.org/abs/1802.01483>`_, ICML 2018.
    """
    alpha = check_number(alpha, "alpha", "l2sp", low=0.0)
    beta = check_number(beta, "beta", "l2sp", low=0.0)

    def _head_flags(params: optax.Params) -> tuple[Any, list[Any], list[bool]]:
        treedef = jax.tree.structure(params)
        leaves = treedef.flatten_up_to(params)  # type: ignore[attr-defined]  # no stub for jaxlib's PyTreeDef
        flags = resolve_static_mask(head_mask, params, "head_mask")
        return treedef, leaves, [False] * len(leaves) if flags is None else flags

    def init_fn(params: optax.Params) -> L2SPState:
        treedef, leaves, head = _head_flags(params)
        anchor = [
            optax.MaskedNode() if h else jnp.array(p, copy=True)
            for p, h in zip(leaves, head, strict=True)
        ]
        return L2SPState(anchor=treedef.unflatten(anchor))

    def update_fn(
        updates: optax.Updates, state: L2SPState, params: optax.Params | None = None
    ) -> tuple[optax.Updates, L2SPState]:
        check_trees(updates, params, "l2sp")
        treedef, p_leaves, head = _head_flags(params)
        g_leaves = treedef.flatten_up_to(updates)
        a_leaves = treedef.flatten_up_to(state.anchor)
        out = []
        for g, p, a, h in zip(g_leaves, p_leaves, a_leaves, head, strict=True):
            acc = acc_dtype(g.dtype)
            pen = beta * p.astype(acc) if h else alpha * (p.astype(acc) - a.astype(acc))
            out.append((g.astype(acc) + pen).astype(g.dtype))
        return treedef.unflatten(out), state

    return optax.GradientTransformation(init_fn, update_fn)
