"""Fast Trainable Projection (FTP) as an Optax optimizer wrapper.

FTP keeps every fine-tuned tensor inside a learned L1 "ball" around its
pre-trained value. Each step, the inner optimizer proposes an unconstrained
candidate; FTP then updates one radius per tensor with a hyper-gradient taken
from the current training gradient (no extra forward/backward pass) and shrinks
each output row of the candidate's offset from the anchor back inside the radius.

This is a port of the authors' released implementation (``util/FTP.py`` in
``GT-RIPL/FTP``, class ``FTP`` used by ``SGDP``/``AdamP``), including its quirks:
the radius starts at 1e-8, 1-D tensors take one whole-tensor norm, saturated rows
are not masked out of the hyper-gradient.

References:
  Tian, Liu, Smith, Kira, `Fast Trainable Projection for Robust Fine-Tuning
  <https://arxiv.org/abs/2310.19182>`_, NeurIPS 2023.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from profit_optax._src.masks import resolve_static_mask
from profit_optax._src.numerics import acc_dtype

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
      >>> import jax.numpy as jnp
      >>> default_reduce_axes(jnp.zeros((3, 3, 8, 16)))
      (0, 1, 2)
      >>> default_reduce_axes(jnp.zeros((16,)))
      (0,)
    """
    ndim = np.ndim(x)
    if ndim >= 2:
        return tuple(range(ndim - 1))
    return tuple(range(ndim))


def _check_unit_interval(name: str, value: float) -> None:
    if not 0.0 <= value < 1.0:
        raise ValueError(f"{name} must be in [0, 1), got {value}.")


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

    Example:
      >>> import jax.numpy as jnp
      >>> import optax
      >>> from profit_optax._src.ftp import ftp
      >>> params = {"w": jnp.ones((3, 2)), "head": jnp.zeros((2,))}
      >>> tx = ftp(optax.sgd(0.1), exclude_mask={"w": False, "head": True})
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
    if not (
        callable(getattr(optimizer, "init", None)) and callable(getattr(optimizer, "update", None))
    ):
        raise TypeError(
            f"optimizer must be an optax.GradientTransformation, got {type(optimizer).__name__}."
        )
    k, mu, b1, b2, eps, gamma_init = (
        float(k),
        float(mu),
        float(b1),
        float(b2),
        float(eps),
        float(gamma_init),
    )
    if k < 0.0:
        raise ValueError(f"k must be >= 0, got {k}.")
    if mu <= 0.0:
        raise ValueError(f"mu must be > 0, got {mu}.")
    _check_unit_interval("b1", b1)
    _check_unit_interval("b2", b2)
    if eps < 0.0:
        raise ValueError(f"eps must be >= 0, got {eps}.")
    if gamma_init <= 0.0:
        raise ValueError(f"gamma_init must be > 0, got {gamma_init}.")
    if not callable(reduce_axes_fn):
        raise TypeError("reduce_axes_fn must be a callable leaf -> tuple of axes.")

    inner = optax.with_extra_args_support(optimizer)
    masked = optax.MaskedNode()

    def _axes(p: jax.Array) -> tuple[int, ...]:
        ndim = np.ndim(p)
        axes = tuple(int(a) for a in reduce_axes_fn(p))
        if any(not -ndim <= a < ndim for a in axes):
            raise ValueError(f"reduce_axes_fn returned axes {axes} for a leaf of shape {p.shape}.")
        return tuple(sorted({a % ndim for a in axes}))

    def _projected(params: optax.Params) -> tuple[Any, list[Any], list[bool]]:
        treedef = jax.tree.structure(params)
        leaves = treedef.flatten_up_to(params)  # type: ignore[attr-defined]  # no stub for jaxlib's PyTreeDef
        excluded = resolve_static_mask(exclude_mask, params, "exclude_mask")
        if excluded is None:
            excluded = [False] * len(leaves)
        for p, ex in zip(leaves, excluded, strict=True):
            if not ex and not jnp.issubdtype(jnp.asarray(p).dtype, jnp.floating):
                raise TypeError(
                    f"ftp projects floating-point leaves only, got dtype {p.dtype}; "
                    "exclude this leaf with exclude_mask."
                )
        return treedef, leaves, [not ex for ex in excluded]

    def init_fn(params: optax.Params) -> FTPState:
        treedef, leaves, proj = _projected(params)

        def per_leaf(fn: Callable[[jax.Array], Any]) -> Any:
            return treedef.unflatten(
                [fn(p) if pr else masked for p, pr in zip(leaves, proj, strict=True)]
            )

        def inv_norm_zeros(p: jax.Array) -> jax.Array:
            shape = tuple(1 if a in _axes(p) else s for a, s in enumerate(p.shape))
            return jnp.zeros(shape, acc_dtype(p.dtype))

        def scalar(value: float) -> Callable[[jax.Array], jax.Array]:
            return lambda p: jnp.asarray(value, acc_dtype(p.dtype))

        return FTPState(
            count=jnp.zeros([], jnp.int32),
            anchor=per_leaf(lambda p: jnp.array(p, copy=True)),
            prev_offset=per_leaf(jnp.zeros_like),
            prev_inv_norm=per_leaf(inv_norm_zeros),
            gamma=per_leaf(scalar(gamma_init)),
            gamma_mu=per_leaf(scalar(0.0)),
            gamma_nu=per_leaf(scalar(0.0)),
            inner_state=inner.init(params),
        )

    def update_fn(
        updates: optax.Updates,
        state: FTPState,
        params: optax.Params | None = None,
        **extra_args: Any,
    ) -> tuple[optax.Updates, FTPState]:
        if params is None:
            raise ValueError("ftp requires params: call update(grads, state, params).")
        treedef, p_leaves, proj = _projected(params)
        try:
            g_leaves = treedef.flatten_up_to(updates)
        except (ValueError, TypeError) as e:
            raise ValueError("ftp: updates and params must have the same tree structure.") from e
        inner_updates, inner_state = inner.update(updates, state.inner_state, params, **extra_args)
        u_leaves = treedef.flatten_up_to(inner_updates)
        fields = [
            treedef.flatten_up_to(t)
            for t in (
                state.anchor,
                state.prev_offset,
                state.prev_inv_norm,
                state.gamma,
                state.gamma_mu,
                state.gamma_nu,
            )
        ]

        first = state.count == 0
        t = state.count + 1
        out_u: list[Any] = []
        out_c: list[Any] = []
        out_inv: list[Any] = []
        out_gamma: list[Any] = []
        out_m: list[Any] = []
        out_v: list[Any] = []
        for i, (p, g, u, pr) in enumerate(zip(p_leaves, g_leaves, u_leaves, proj, strict=True)):
            if not pr:
                out_u.append(u)
                for out in (out_c, out_inv, out_gamma, out_m, out_v):
                    out.append(masked)
                continue
            w0, c_prev, inv_prev, gamma, m, v = (f[i] for f in fields)
            acc = acc_dtype(p.dtype)
            axes = _axes(p)
            p32 = p.astype(acc)
            w0 = w0.astype(acc)
            c = p32 + u.astype(acc) - w0
            norm = jnp.sum(jnp.abs(c), axis=axes, keepdims=True) + _NORM_EPS

            hg = jnp.sum(
                jnp.sum(g.astype(acc) * c_prev.astype(acc), axis=axes, keepdims=True) * inv_prev
            )
            hg = jnp.where(first, jnp.zeros_like(hg), hg)
            hg = jnp.where(hg > 0, k * hg, hg)
            m = b1 * m + (1.0 - b1) * hg
            v = b2 * v + (1.0 - b2) * hg**2
            tf = t.astype(acc)
            m_hat = m / (1.0 - jnp.asarray(b1, acc) ** tf)
            v_hat = v / (1.0 - jnp.asarray(b2, acc) ** tf)
            new_gamma = gamma - mu * m_hat / (jnp.sqrt(v_hat) + eps)
            new_gamma = jnp.clip(new_gamma, _GAMMA_MIN, jnp.max(norm))
            new_gamma = jnp.where(first, jnp.asarray(gamma_init, acc), new_gamma).astype(acc)

            inv = 1.0 / norm
            ratio = jnp.clip(new_gamma * inv, 0.0, 1.0)
            new_p = w0 + ratio * c
            out_u.append((new_p - p32).astype(p.dtype))
            out_c.append(c.astype(c_prev.dtype))
            out_inv.append(inv.astype(inv_prev.dtype))
            out_gamma.append(new_gamma)
            out_m.append(m.astype(acc))
            out_v.append(v.astype(acc))

        new_state = FTPState(
            count=optax.safe_int32_increment(state.count),
            anchor=state.anchor,
            prev_offset=treedef.unflatten(out_c),
            prev_inv_norm=treedef.unflatten(out_inv),
            gamma=treedef.unflatten(out_gamma),
            gamma_mu=treedef.unflatten(out_m),
            gamma_nu=treedef.unflatten(out_v),
            inner_state=inner_state,
        )
        return treedef.unflatten(out_u), new_state

    return optax.GradientTransformationExtraArgs(init_fn, update_fn)
