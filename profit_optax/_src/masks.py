"""Boolean masks over parameter trees (embedding, head, arbitrary paths).

Masks are pytrees of Python bools with the structure of the params, usable as
``optax.masked`` masks, ``optax.selective_transform(..., freeze_mask=...)``, and
the ``exclude_mask`` / ``head_mask`` arguments of this package. They work on
Flax linen param dicts (with or without the top-level ``"params"`` collection
key) and on ``flax.nnx.State`` trees (whose leaf paths end in the
``GetAttrKey("value")`` of each ``nnx.Variable``).

The freeze-embedding recipe follows Kumar et al., `How to Fine-Tune Vision Models
with SGD <https://arxiv.org/abs/2211.09359>`_, ICLR 2024: freeze the patch
embedding only; positional embedding and class token stay trainable.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

PathKey = str | int
Path = tuple[PathKey, ...]
Predicate = Callable[[Path, Any], bool]

_NUMBERED = re.compile(r"^(?P<prefix>.+)_(?P<index>\d+)$")


def _key_name(key: Any) -> PathKey:
    if isinstance(key, jax.tree_util.DictKey):
        k = key.key
        return k if isinstance(k, int) else str(k)
    if isinstance(key, jax.tree_util.GetAttrKey):
        return key.name
    if isinstance(key, jax.tree_util.SequenceKey):
        return key.idx
    if isinstance(key, jax.tree_util.FlattenedIndexKey):
        return key.key
    return str(key)


def normalize_path(keypath: Sequence[Any]) -> Path:
    """Turns a JAX key path into a tuple of names (str) and indices (int).

    Drops a leading ``"params"`` collection key (linen ``variables`` dicts) and the
    trailing ``.value`` attribute of ``flax.nnx`` variables.

    Args:
      keypath: a key path from ``jax.tree_util.tree_map_with_path``.

    Returns:
      The normalized path.

    Example:
      >>> from jax.tree_util import DictKey, GetAttrKey
      >>> from profit_optax.masks import normalize_path
      >>> normalize_path((DictKey("params"), DictKey("head"), DictKey("kernel")))
      ('head', 'kernel')
      >>> normalize_path((DictKey("layers"), DictKey(0), DictKey("bias"), GetAttrKey("value")))
      ('layers', 0, 'bias')
    """
    keys = list(keypath)
    if keys and isinstance(keys[-1], jax.tree_util.GetAttrKey) and keys[-1].name == "value":
        keys = keys[:-1]
    path = tuple(_key_name(k) for k in keys)
    if len(path) > 1 and path[0] == "params":
        path = path[1:]
    return path


def _paths(params: Any) -> list[Path]:
    return [normalize_path(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)]


def top_level_keys(params: Any) -> list[PathKey]:
    """Top-level module names of ``params`` (after dropping a ``"params"`` key), in order."""
    seen: dict[PathKey, None] = {}
    for path in _paths(params):
        if path:
            seen.setdefault(path[0], None)
    return list(seen)


def _as_str_tuple(value: str | Sequence[str] | None, what: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, Sequence) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise TypeError(f"{what} must be a string or a sequence of strings, got {value!r}.")


def _prefix_predicate(prefixes: tuple[str, ...]) -> Predicate:
    split = [tuple(p.strip("/").split("/")) for p in prefixes]

    def pred(path: Path, leaf: Any) -> bool:
        del leaf
        names = tuple(str(k) for k in path)
        return any(names[: len(s)] == s for s in split)

    return pred


def _names_predicate(names: tuple[str, ...]) -> Predicate:
    wanted = set(names)

    def pred(path: Path, leaf: Any) -> bool:
        del leaf
        return any(str(k) in wanted for k in path)

    return pred


def path_mask(params: Any, predicate_or_prefixes: Predicate | str | Sequence[str]) -> Any:
    """Builds a bool mask from leaf paths.

    Args:
      params: a parameter pytree (linen dict, ``{"params": ...}`` dict, ``nnx.State``).
      predicate_or_prefixes: either a callable ``(path, leaf) -> bool`` receiving the
        normalized path (see :func:`normalize_path`), or one or several
        ``"/"``-separated path prefixes: ``"embedding"`` selects every leaf under the
        top-level module ``embedding``, ``"Transformer/encoderblock_0"`` a nested
        module, ``"head/kernel"`` a single leaf. Indices are written as numbers
        (``"layers/0"``).

    Returns:
      A pytree of Python bools with the structure of ``params``. It may select
      nothing; :func:`embedding_mask` and :func:`head_mask` check that it does not.

    Example:
      >>> import jax.numpy as jnp
      >>> from profit_optax.masks import path_mask
      >>> params = {"embedding": {"kernel": jnp.zeros((2, 2))}, "head": {"bias": jnp.zeros(2)}}
      >>> path_mask(params, "head")
      {'embedding': {'kernel': False}, 'head': {'bias': True}}
      >>> path_mask(params, lambda path, leaf: leaf.ndim == 2)
      {'embedding': {'kernel': True}, 'head': {'bias': False}}
    """
    if callable(predicate_or_prefixes):
        pred = predicate_or_prefixes
    else:
        pred = _prefix_predicate(_as_str_tuple(predicate_or_prefixes, "prefixes"))
    return jax.tree_util.tree_map_with_path(
        lambda kp, leaf: bool(pred(normalize_path(kp), leaf)), params
    )


def _numbered_layers(params: Any) -> list[str] | None:
    """Prefixes of the MLP layers in order, e.g. ``["Dense_0", "Dense_1"]`` or ``["layers/0"]``."""
    top = top_level_keys(params)
    groups: dict[str, dict[int, str]] = {}
    for key in top:
        m = _NUMBERED.match(str(key))
        if m:
            groups.setdefault(m["prefix"], {})[int(m["index"])] = str(key)
    if "Dense" in groups:
        group = groups["Dense"]
    elif len(groups) == 1:
        (group,) = groups.values()
    else:
        # A list container: nnx.List / Python list of layers under one top-level key.
        lists: dict[Any, set[int]] = {}
        for path in _paths(params):
            if len(path) > 1 and isinstance(path[1], int):
                lists.setdefault(path[0], set()).add(path[1])
        if len(lists) != 1:
            return None
        ((name, indices),) = lists.items()
        return [f"{name}/{i}" for i in sorted(indices)]
    return [group[i] for i in sorted(group)]


def _named_mask(
    params: Any,
    *,
    what: str,
    names: str | Sequence[str] | None,
    prefixes: str | Sequence[str] | None,
    default_module: str,
    layer_index: int,
) -> Any:
    names_t = _as_str_tuple(names, "names")
    prefixes_t = _as_str_tuple(prefixes, "prefixes")
    top = top_level_keys(params)
    if names_t or prefixes_t:
        by_name, by_prefix = _names_predicate(names_t), _prefix_predicate(prefixes_t)
        looked_for = " and ".join(
            s
            for s in (
                f"module names {list(names_t)}" if names_t else "",
                f"path prefixes {list(prefixes_t)}" if prefixes_t else "",
            )
            if s
        )
        mask = path_mask(
            params,
            lambda path, leaf: (
                (bool(names_t) and by_name(path, leaf))
                or (bool(prefixes_t) and by_prefix(path, leaf))
            ),
        )
    elif default_module in top:
        looked_for = f"a top-level module {default_module!r}"
        mask = path_mask(params, default_module)
    else:
        layers = _numbered_layers(params)
        if not layers:
            raise ValueError(
                f"{what}: found neither a top-level module {default_module!r} (ViT) nor "
                f"numbered layers such as 'Dense_0'..'Dense_k' (MLP). Top-level keys found: "
                f"{top}. Pass names= or prefixes= explicitly."
            )
        looked_for = f"MLP layer {layers[layer_index]!r}"
        mask = path_mask(params, layers[layer_index])
    if not any(jax.tree.leaves(mask)):
        raise ValueError(f"{what}: no parameter matched {looked_for}. Top-level keys found: {top}.")
    return mask


def embedding_mask(
    params: Any,
    *,
    names: str | Sequence[str] | None = None,
    prefixes: str | Sequence[str] | None = None,
) -> Any:
    """Mask of the embedding layer (``True`` = embedding leaf), for freeze-embed SGD.

    Default rules, when neither ``names`` nor ``prefixes`` is given:

    * ViT: the top-level module ``"embedding"`` (the patch-embedding Conv: kernel and
      bias). ``"pos_embedding"`` and ``"cls"`` are *not* selected, as in Kumar et al.
    * MLP: the first of the numbered layers ``Dense_0 .. Dense_k`` (or, if there are
      no ``Dense_*`` modules, the only group of ``<name>_<i>`` modules, or the only
      list of layers such as an ``nnx.List`` attribute ``layers/0 .. layers/k``).

    Args:
      params: a parameter pytree (linen dict, ``{"params": ...}`` dict, ``nnx.State``).
      names: module names matched against *any* component of a leaf's path.
      prefixes: ``"/"``-separated path prefixes, as in :func:`path_mask`.

    Returns:
      A pytree of Python bools with the structure of ``params``.

    Raises:
      ValueError: if the mask selects nothing; the message lists what was looked for
        and the top-level keys found.

    Example:
      >>> import jax.numpy as jnp
      >>> from profit_optax.masks import embedding_mask
      >>> vit = {"params": {"embedding": {"kernel": jnp.zeros((4, 4, 3, 8)), "bias": jnp.zeros(8)},
      ...                   "cls": jnp.zeros((1, 1, 8)), "head": {"bias": jnp.zeros(10)}}}
      >>> embedding_mask(vit)["params"]
      {'cls': False, 'embedding': {'bias': True, 'kernel': True}, 'head': {'bias': False}}
      >>> mlp = {"Dense_0": {"bias": jnp.zeros(3)}, "Dense_1": {"bias": jnp.zeros(2)}}
      >>> embedding_mask(mlp)
      {'Dense_0': {'bias': True}, 'Dense_1': {'bias': False}}
    """
    return _named_mask(
        params,
        what="embedding_mask",
        names=names,
        prefixes=prefixes,
        default_module="embedding",
        layer_index=0,
    )


def head_mask(
    params: Any,
    *,
    names: str | Sequence[str] | None = None,
    prefixes: str | Sequence[str] | None = None,
) -> Any:
    """Mask of the classification head (``True`` = head leaf).

    Default rules, when neither ``names`` nor ``prefixes`` is given: the top-level
    module ``"head"`` (ViT) or the last of the numbered MLP layers (see
    :func:`embedding_mask` for how they are found).

    Args:
      params: a parameter pytree (linen dict, ``{"params": ...}`` dict, ``nnx.State``).
      names: module names matched against *any* component of a leaf's path.
      prefixes: ``"/"``-separated path prefixes, as in :func:`path_mask`.

    Returns:
      A pytree of Python bools with the structure of ``params``.

    Raises:
      ValueError: if the mask selects nothing; the message lists what was looked for
        and the top-level keys found.

    Example:
      >>> import jax.numpy as jnp
      >>> from profit_optax.masks import head_mask
      >>> mlp = {f"Dense_{i}": {"kernel": jnp.zeros((2, 2))} for i in range(3)}
      >>> head_mask(mlp)
      {'Dense_0': {'kernel': False}, 'Dense_1': {'kernel': False}, 'Dense_2': {'kernel': True}}
      >>> head_mask(mlp, names="Dense_1")["Dense_1"]
      {'kernel': True}
    """
    return _named_mask(
        params,
        what="head_mask",
        names=names,
        prefixes=prefixes,
        default_module="head",
        layer_index=-1,
    )


def invert_mask(mask: Any) -> Any:
    """Logical NOT of a bool mask (e.g. "everything but the head").

    Example:
      >>> from profit_optax.masks import invert_mask
      >>> invert_mask({"a": True, "b": False})
      {'a': False, 'b': True}
    """
    return jax.tree.map(lambda m: not m, mask)


def resolve_static_mask(mask: Any, params: Any, what: str) -> list[bool] | None:
    """Flattens a static bool mask (or ``params -> mask`` callable) along ``params``' leaves.

    Args:
      mask: ``None``, a pytree of bools with the structure of ``params``, or a
        callable returning one.
      params: the parameter pytree.
      what: the argument's name, for error messages.

    Returns:
      ``None`` if ``mask`` is ``None``, else one Python bool per leaf of ``params``.

    Raises:
      ValueError: if the structures differ.
      TypeError: if a leaf is not a (static) bool.
    """
    if mask is None:
        return None
    if callable(mask):
        mask = mask(params)
    treedef = jax.tree.structure(params)
    try:
        leaves = treedef.flatten_up_to(mask)  # type: ignore[attr-defined]  # no stub for jaxlib's PyTreeDef
    except (ValueError, TypeError) as e:
        raise ValueError(
            f"{what} must be a pytree of bools with the same structure as params "
            f"(params: {treedef}; {what}: {jax.tree.structure(mask)})."
        ) from e
    out = []
    for leaf in leaves:
        if isinstance(leaf, jax.core.Tracer):
            raise TypeError(f"{what} must be static (Python bools), got a traced value.")
        is_bool_array = (
            isinstance(leaf, np.ndarray | jax.Array)
            and np.shape(leaf) == ()
            and np.asarray(leaf).dtype == np.bool_
        )
        if not (isinstance(leaf, bool | np.bool_) or is_bool_array):
            raise TypeError(f"{what} leaves must be bools, got {type(leaf).__name__}: {leaf!r}.")
        out.append(bool(leaf))
    return out
