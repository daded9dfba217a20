"""Fast Trainable Projection (FTP) as an Optax optimizer wrapper.

FTP keeps every fine-tuned tensor inside a learned L1 "ball" around its
pre-trained value ``w0``. At global step t (from 1), with the current params W,
the raw gradient g at W and the inner optimizer's update u, each projected
tensor (:func:`_project_leaf`):

1. c ← W + u − w0, the unconstrained candidate's offset from the anchor;
2. n ← rowL1(c) + 1e-8, one L1 norm per output row;
3. γ takes one Adam step on the hyper-gradient ∂L(W)/∂γ_{t−1} =
   Σ_rows ⟨g, c_{t−1}⟩ / n_{t−1}, read off the current gradient (no extra
   forward/backward pass), then is clipped to [1e-8, max(n)] (:func:`_radius_step`);
4. W ← w0 + clip(γ / n, 0, 1) · c: each row of the offset shrinks back inside γ.

This is a port of the authors' released implementation (``util/FTP.py`` in
``GT-RIPL/FTP``, class ``FTP`` used by ``SGDP``/``AdamP``), including its quirks:
the radius starts at 1e-8, 1-D tensors take one whole-tensor norm, saturated rows
are not masked out of the hyper-gradient.

References:
  Tian, Liu, Smith, Kira, `Fast Trainable Projection for Robust Fine-Tuning
  <https://arxiv.org/abs/2310.19182>`_, NeurIPS 2023.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from profit_optax._src.checks import check_number, check_transformation, check_trees
from profit_optax._src.masks import resolve_static_mask
from profit_optax._src.numerics import acc_dtype

__all__ = ["FTPState", "default_reduce_axes", "ftp"]

# Constants hard-coded in the authors' FTP class.
_NORM_EPS = 1e-8  # added to every row L1 norm (``_mars_norm``)
_GAMMA_MIN = 1e-8  # lower end of the radius clip (``_clip``)

ReduceAxesFn = Callable[[jax.Array], tuple[int, ...]]
MaskOrFn = Any | Callable[[optax.Params], Any]


class FTPState(NamedTuple):
    """State of the :class:`optax.GradientTransformation` returned by :func:`ftp`.

    For leaves excluded from the projection (``exclude_mask`` True) every per-leaf
    field holds an :class:`optax.MaskedNode` (no arrays).

    Attributes:
      count: Number of ``update`` calls so far (int32 scalar). The authors' global
        step is ``t = count + 1``; it drives the bias correction of every radius.
      anchor: Pre-trained weights ``w0``, copied from ``init``'s params (param dtype).
      prev_offset: Unconstrained offset ``c_{t-1} = (W_{t-2} + u_{t-1}) - w0`` of the
        previous step (param dtype; zeros before the first step).
      prev_inv_norm: ``1 / (rowL1(c_{t-1}) + 1e-8)`` with the reduced axes kept as
        size 1 (accumulation dtype; zeros before the first step).
      gamma: Radius ``γ`` of each projected leaf (scalar, accumulation dtype).
      gamma_mu: Adam first moment of the radius hyper-gradient (scalar).
      gamma_nu: Adam second moment of the radius hyper-gradient (scalar).
      inner_state: State of the wrapped optimizer.
    """

    count: jax.Array  # type: ignore[assignment]  # shadows tuple.count, as in optax's states
    anchor: optax.Params
    prev_offset: optax.Params
    prev_inv_norm: optax.Params
    gamma: optax.Params
    gamma_mu: optax.Params
    gamma_nu: optax.Params
    inner_state: optax.OptState


class _Leaf(NamedTuple):
    """The per-leaf fields of :class:`FTPState` for one tensor (each an array, or an
    ``optax.MaskedNode`` for an excluded leaf)."""

    anchor: Any
    prev_offset: Any
    prev_inv_norm: Any
    gamma: Any
    gamma_mu: Any
    gamma_nu: Any


def _leaves_of(state: FTPState, treedef: Any) -> list[_Leaf]:
    """One :class:`_Leaf` per leaf of the params, from the state's per-leaf trees."""
    trees = [treedef.flatten_up_to(getattr(state, f)) for f in _Leaf._fields]
    return [_Leaf(*fields) for fields in zip(*trees, strict=True)]


def _trees_of(leaves: list[_Leaf], treedef: Any) -> dict[str, Any]:
    """The inverse of :func:`_leaves_of`: the per-leaf fields as ``FTPState`` keywords."""
    columns = zip(*leaves, strict=True) if leaves else [[]] * len(_Leaf._fields)
    return {f: treedef.unflatten(list(c)) for f, c in zip(_Leaf._fields, columns, strict=True)}


def default_reduce_axes(x: jax.Array) -> tuple[int, ...]:
    """Axes summed by FTP's per-row L1 norm for a Flax-layout parameter.

    PyTorch weights are ``(out, in, ...)`` and FTP reduces over dims ``1..ndim-1``
    (one norm per output channel). Flax ``Dense`` kernels are ``(in, out)`` and
    ``Conv`` kernels ``(kh, kw, in, out)``, so the equivalent is every axis except
    the last. For 1-D and 0-D tensors the authors' ``torch.sum(x, dim=())`` reduces
    over *all* dimensions, so biases and norm scales get one whole-tensor norm.

    Args:
      x: a parameter (or anything with ``ndim``).

    Returns:
      The axes to sum over.

    Example:
      >>> import jax.numpy as jnp, profit_optax
      >>> profit_optax.default_reduce_axes(jnp.zeros((3, 3, 8, 16)))
      (0, 1, 2)
      >>> profit_optax.default_reduce_axes(jnp.zeros((16,)))
      (0,)
    """
    ndim = np.ndim(x)
    if ndim >= 2:
        return tuple(range(ndim - 1))
    return tuple(range(ndim))


@dataclasses.dataclass(frozen=True)
class _Config:
    """The arguments of :func:`ftp`, checked."""

    k: float
    mu: float
    b1: float
    b2: float
    eps: float
    gamma_init: float
    exclude_mask: MaskOrFn | None
    reduce_axes_fn: ReduceAxesFn

    def axes(self, p: jax.Array) -> tuple[int, ...]:
        """The row norm's axes for leaf ``p``, checked and made non-negative."""
        ndim = np.ndim(p)
        axes = tuple(int(a) for a in self.reduce_axes_fn(p))
        if any(not -ndim <= a < ndim for a in axes):
            raise ValueError(f"reduce_axes_fn returned axes {axes} for a leaf of shape {p.shape}.")
        return tuple(sorted({a % ndim for a in axes}))

    def projected(self, params: optax.Params) -> list[bool]:
        """One flag per leaf: projected (not excluded); only floating-point leaves can be."""
        leaves = jax.tree.leaves(params)
        excluded = resolve_static_mask(self.exclude_mask, params, "exclude_mask")
        flags = [True] * len(leaves) if excluded is None else [not ex for ex in excluded]
        for p, flag in zip(leaves, flags, strict=True):
            if flag and not jnp.issubdtype(jnp.asarray(p).dtype, jnp.floating):
                raise TypeError(
                    f"ftp projects floating-point leaves only, got dtype {p.dtype}; "
                    "exclude this leaf with exclude_mask."
                )
        return flags


def _init_leaf(cfg: _Config, p: jax.Array) -> _Leaf:
    acc = acc_dtype(p.dtype)
    axes = cfg.axes(p)
    row_shape = tuple(1 if a in axes else s for a, s in enumerate(p.shape))
    return _Leaf(
        anchor=jnp.array(p, copy=True),
        prev_offset=jnp.zeros_like(p),
        prev_inv_norm=jnp.zeros(row_shape, acc),
        gamma=jnp.asarray(cfg.gamma_init, acc),
        gamma_mu=jnp.asarray(0.0, acc),
        gamma_nu=jnp.asarray(0.0, acc),
    )


def _radius_step(
    cfg: _Config, count: jax.Array, leaf: _Leaf, g: jax.Array, norm: jax.Array, axes: tuple
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Step 3: the new radius γ and its Adam moments (m, v).

    The hyper-gradient ∂L(W_{t−1})/∂γ_{t−1} = Σ_rows ⟨g, c_{t−1}⟩ / n_{t−1}, with its
    positive part (the shrink signal) scaled by ``k``; one Adam step with bias
    correction at t = ``count + 1``; γ clipped to [1e-8, max(n)]. At t = 1: γ_init.
    """
    acc = norm.dtype
    first = count == 0
    t = (count + 1).astype(acc)
    row_dots = jnp.sum(g.astype(acc) * leaf.prev_offset.astype(acc), axis=axes, keepdims=True)
    hg = jnp.sum(row_dots * leaf.prev_inv_norm)
    hg = jnp.where(first, jnp.zeros_like(hg), hg)
    hg = jnp.where(hg > 0, cfg.k * hg, hg)
    m = cfg.b1 * leaf.gamma_mu + (1.0 - cfg.b1) * hg
    v = cfg.b2 * leaf.gamma_nu + (1.0 - cfg.b2) * hg**2
    m_hat = m / (1.0 - jnp.asarray(cfg.b1, acc) ** t)
    v_hat = v / (1.0 - jnp.asarray(cfg.b2, acc) ** t)
    gamma = leaf.gamma - cfg.mu * m_hat / (jnp.sqrt(v_hat) + cfg.eps)
    gamma = jnp.clip(gamma, _GAMMA_MIN, jnp.max(norm))
    gamma = jnp.where(first, jnp.asarray(cfg.gamma_init, acc), gamma).astype(acc)
    return gamma, m.astype(acc), v.astype(acc)


def _project_leaf(
    cfg: _Config, count: jax.Array, w: jax.Array, g: jax.Array, u: jax.Array, leaf: _Leaf
) -> tuple[jax.Array, _Leaf]:
    """Steps 1–4 for one projected tensor: its update and its new per-leaf state."""
    dtype, acc = w.dtype, acc_dtype(w.dtype)
    axes = cfg.axes(w)
    w, w0 = w.astype(acc), leaf.anchor.astype(acc)
    c = w + u.astype(acc) - w0  # 1. the unconstrained offset
    norm = jnp.sum(jnp.abs(c), axis=axes, keepdims=True) + _NORM_EPS  # 2. row L1 norms
    gamma, m, v = _radius_step(cfg, count, leaf, g, norm, axes)  # 3. the radius
    inv_norm = 1.0 / norm
    new_w = w0 + jnp.clip(gamma * inv_norm, 0.0, 1.0) * c  # 4. shrink the rows toward w0
    new_leaf = _Leaf(
        anchor=leaf.anchor,
        prev_offset=c.astype(leaf.prev_offset.dtype),
        prev_inv_norm=inv_norm.astype(leaf.prev_inv_norm.dtype),
        gamma=gamma,
        gamma_mu=m,
        gamma_nu=v,
    )
    return (new_w - w).astype(dtype), new_leaf


def ftp(
    optimizer: optax.GradientTransformation,
    *,
    k: float = 1.0,
    mu: float = 1e-2,
    b1: float = 0.9,
    b2: float = 0.999,
    eps: float = 1e-8,
    gamma_init: float = 1e-8,
    exclude_mask: MaskOrFn | None = None,
    reduce_axes_fn: ReduceAxesFn = default_reduce_axes,
) -> optax.GradientTransformationExtraArgs:
    r"""Fast Trainable Projection (FTP) around the initial parameters.

    Wraps ``optimizer``. At global step ``t`` (starting at 1), with raw gradient
    ``g`` (the ``updates`` passed to ``update``), current params ``W`` and inner
    update ``u``, every projected leaf does:

    .. code-block:: text

      c     = W + u - w0                          # unconstrained offset from the anchor
      n     = rowL1(c) + 1e-8                     # one L1 norm per output row
      hg    = sum(rowdot(g, c_prev) / n_prev)     # dL(W)/dgamma_{t-1}; 0 at t = 1
      hg    = k * hg if hg > 0 else hg            # anneal the shrink signal
      m, v  = Adam moments of hg (b1, b2)
      gamma = gamma - mu * m_hat / (sqrt(v_hat) + eps), bias correction with t
      gamma = clip(gamma, 1e-8, max(n))           # gamma = gamma_init at t = 1
      W_new = w0 + clip(gamma / n, 0, 1) * c      # shrink each row toward w0

    so every row of ``W_new - w0`` has L1 norm at most ``gamma``. Leaves excluded by
    ``exclude_mask`` (normally the new classification head, which has no
    pre-trained value) receive the plain inner update ``u``.

    Rows follow the Flax layout (see :func:`default_reduce_axes`): the norm sums
    over every axis but the last for ``ndim >= 2`` and over the whole tensor for 1-D
    and 0-D leaves (the authors' ``torch.sum(dim=())`` behaviour). With
    ``optimizer=optax.sgd(lr, momentum=0.9, nesterov=True)`` this is the authors'
    ``SGDP``; with ``optax.adamw(lr, weight_decay=wd)`` it is their ``AdamP``.

    Memory: besides the inner optimizer's state, FTP stores two param-sized buffers
    for projected leaves, the anchor ``w0`` and the previous offset ``c_prev``
    (``c_prev`` cannot be recomputed from ``W - w0``: after the first step that
    difference underflows to 0 in float32 and the radius would never grow), plus
    one inverse norm per output row and three scalars per tensor. In float32 that
    is about +8 bytes per parameter.

    Args:
      optimizer: the inner optimizer producing the unconstrained step ``u``.
      k: factor on positive hyper-gradients (the shrink signal), ``k >= 0``. The
        authors describe it as in ``[0, 1]``; 1 is the strongest regularization.
      mu: learning rate of the Adam update on each radius.
      b1: Adam ``beta1`` for the radius.
      b2: Adam ``beta2`` for the radius.
      eps: Adam epsilon for the radius.
      gamma_init: radius used at the first step. The authors' 1e-8 makes the first
        step a no-op for projected leaves.
      exclude_mask: pytree of bools with the structure of the params, or a callable
        ``params -> mask``; ``True`` leaves are not projected and keep no FTP state.
        Must be static (Python bools).
      reduce_axes_fn: ``leaf -> axes`` summed by the row norm. Defaults to
        :func:`default_reduce_axes`.

    Returns:
      A :class:`optax.GradientTransformationExtraArgs`. ``update`` requires
      ``params``; extra keyword arguments are forwarded to ``optimizer``.

    Raises:
      TypeError: if ``optimizer`` is not a gradient transformation, a hyperparameter
        is not a number or ``reduce_axes_fn`` is not callable; at ``init``/``update``
        for a non-bool mask or a projected leaf that is not floating-point.
      ValueError: for a hyperparameter out of its range; at ``init``/``update`` for
        a mask that does not match the params or axes out of range; at ``update``
        for ``params=None`` or gradient and parameter trees that differ.

    Example:
      >>> import jax.numpy as jnp, optax, profit_optax
      >>> params = {"w": jnp.ones((3, 2)), "head": jnp.zeros((2,))}
      >>> tx = profit_optax.ftp(optax.sgd(0.1), exclude_mask={"w": False, "head": True})
      >>> state = tx.init(params)
      >>> grads = {"w": jnp.ones((3, 2)), "head": jnp.ones((2,))}
      >>> updates, state = tx.update(grads, state, params)
      >>> params = optax.apply_updates(params, updates)
      >>> params["head"]  # excluded: plain SGD step
      Array([-0.1, -0.1], dtype=float32)
      >>> bool(jnp.all(params["w"] == 1.0))  # first step: radius 1e-8, w stays at w0
      True
      >>> updates, state = tx.update(grads, state, params)
      >>> print(f"{float(state.gamma['w']):.5f}")  # the radius has grown
      0.00744

    References:
      Tian, Liu, Smith, Kira, `Fast Trainable Projection for Robust Fine-Tuning
      <https://arxiv.org/abs/2310.19182>`_, NeurIPS 2023. Authors' code:
      ``GT-RIPL/FTP``, ``util/FTP.py``.
    """

    check_transformation(optimizer, "optimizer", "ftp")
    if not callable(reduce_axes_fn):
        raise TypeError("ftp: `reduce_axes_fn` must be a callable leaf -> tuple of axes.")
    cfg = _Config(
        k=check_number(k, "k", "ftp", low=0.0),
        mu=check_number(mu, "mu", "ftp", low=0.0, low_open=True),
        b1=check_number(b1, "b1", "ftp", low=0.0, high=1.0, high_open=True),
        b2=check_number(b2, "b2", "ftp", low=0.0, high=1.0, high_open=True),
        eps=check_number(eps, "eps", "ftp", low=0.0),
        gamma_init=check_number(gamma_init, "gamma_init", "ftp", low=0.0, low_open=True),
        exclude_mask=exclude_mask,
        reduce_axes_fn=reduce_axes_fn,
    )
    inner = optax.with_extra_args_support(optimizer)

    def init_fn(params: optax.Params) -> FTPState:
        treedef = jax.tree.structure(params)
        leaves = [
            _init_leaf(cfg, p) if projected else _Leaf(*[optax.MaskedNode()] * len(_Leaf._fields))
            for p, projected in zip(jax.tree.leaves(params), cfg.projected(params), strict=True)
        ]
        return FTPState(
            count=jnp.zeros([], jnp.int32),
            inner_state=inner.init(params),
            **_trees_of(leaves, treedef),
        )

    def update_fn(
        updates: optax.Updates,
        state: FTPState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, FTPState]:
        check_trees(updates, params, "ftp")
        inner_updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
        treedef: Any = jax.tree.structure(params)  # no stub for jaxlib's PyTreeDef
        columns = (treedef.flatten_up_to(t) for t in (params, updates, inner_updates))
        out = [
            _project_leaf(cfg, state.count, w, g, u, leaf) if projected else (u, leaf)
            for projected, w, g, u, leaf in zip(
                cfg.projected(params), *columns, _leaves_of(state, treedef), strict=True
            )
        ]
        new_updates, new_leaves = zip(*out, strict=True) if out else ((), ())
        new_state = FTPState(
            count=optax.safe_int32_increment(state.count),
            inner_state=inner_state,
            **_trees_of(list(new_leaves), treedef),
        )
        return treedef.unflatten(list(new_updates)), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
