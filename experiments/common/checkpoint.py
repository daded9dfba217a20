"""Orbax checkpointing of parameter pytrees (pretrained models reused by every fine-tuning run)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp

PyTree = Any


def save_pytree(path: str | os.PathLike[str], tree: PyTree) -> Path:
    """Saves ``tree`` (a pytree of arrays) to the directory ``path`` with Orbax.

    ``path`` must not exist yet (Orbax refuses to overwrite); it is made absolute
    because Orbax requires absolute paths. Blocks until the save has finished.
    """
    path = Path(path).absolute()
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(path, tree)
        checkpointer.wait_until_finished()
    return path


def restore_pytree(path: str | os.PathLike[str], like: PyTree) -> PyTree:
    """Restores the pytree saved at ``path``, with the structure, shapes and dtypes of ``like``.

    ``like`` may hold arrays or ``jax.ShapeDtypeStruct`` leaves.
    """
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), like)
    with ocp.StandardCheckpointer() as checkpointer:
        return checkpointer.restore(Path(path).absolute(), abstract)
