"""Compiled donated training steps for tests that read XLA's HLO (copies, temporaries)."""

from __future__ import annotations

import re
from typing import Any

import jax
import jax.numpy as jnp
import optax


def donated_step(tx: optax.GradientTransformation, shape: tuple[int, int] = (256, 128)) -> Any:
    """The compiled ``update + apply_updates`` step of ``tx`` on a (``shape``-kernel, bias)
    tree, with params and state donated; the gradient is computed inside the step."""
    params = {"w": jnp.zeros(shape), "b": jnp.zeros(shape[1:])}

    def step(p, s, x):
        g = jax.tree.map(lambda a: jnp.sin(a + x), p)
        u, s = tx.update(g, s, p)
        return optax.apply_updates(p, u), s

    return jax.jit(step, donate_argnums=(0, 1)).lower(params, tx.init(params), 1.0).compile()


def param_sized_copies(compiled: Any, shape: tuple[int, int]) -> dict[str, list[str]]:
    """Per computation (the entry one keyed ``"ENTRY"``), the sources of the ``copy`` ops
    of f32 buffers shaped like the kernel."""
    pattern = rf"= f32\[{shape[0]},{shape[1]}\]\{{[0-9,]*\}} copy\((%[\w.\-]+)\)"
    copies = {}
    for block in re.split(r"\n(?=\S)", compiled.as_text()):
        name = "ENTRY" if block.startswith("ENTRY") else block.split(" ", 1)[0]
        found = re.findall(pattern, block)
        if found:
            copies[name] = found
    return copies
