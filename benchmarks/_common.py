"""Shared helpers: environment report, parameter trees, interleaved timing.

The analysis of compiled programs (HLO) is in :mod:`benchmarks.hlo`.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# ----------------------------------------------------------------------------
# Environment.


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> tuple[float, float, float] | None:
    try:
        return os.getloadavg()
    except OSError:
        return None


def env_info() -> dict[str, Any]:
    """Versions, device and load: everything RESULTS.md needs to say where numbers come from."""
    import jaxlib
    import optax

    try:
        import flax

        flax_version = flax.__version__
    except ImportError:  # flax is only needed for the step benchmark
        flax_version = None
    dev = jax.devices()[0]
    return {
        "python": sys.version.split()[0],
        "jax": jax.__version__,
        "jaxlib": jaxlib.__version__,
        "optax": optax.__version__,
        "flax": flax_version,
        "backend": jax.default_backend(),
        "device": f"{dev.platform}: {dev.device_kind}",
        "device_count": jax.device_count(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "load_average": load_average(),
        "time": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def env_markdown(info: dict[str, Any]) -> str:
    la = info["load_average"]
    la_s = "n/a" if la is None else " / ".join(f"{x:.2f}" for x in la)
    return (
        f"- device: {info['device']} (backend `{info['backend']}`, {info['device_count']} "
        f"device(s)); CPU: {info['cpu_model']}, {info['cpu_count']} cores\n"
        f"- python {info['python']}, jax {info['jax']}, jaxlib {info['jaxlib']}, "
        f"optax {info['optax']}, flax {info['flax']}\n"
        f"- load average (1/5/15 min) at start: {la_s}; {info['time']}"
    )


def report(res: dict[str, Any], markdown: Any, json_path: str | None) -> dict[str, Any]:
    """Prints the environment and ``markdown(res)``, writes ``res`` as JSON; returns ``res``."""
    print(env_markdown(res["env"]))
    print()
    print(markdown(res))
    write_json(json_path, res)
    return res


def write_json(path: str | None, payload: Any) -> None:
    if not path:
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(payload, f, indent=1, default=str)


# ----------------------------------------------------------------------------
# Parameter trees.


def transformer_like_params(n_target: float, dtype: Any = jnp.float32, *, depth: int = 4, seed=0):
    """A dict of transformer-block-shaped leaves with about ``n_target`` parameters.

    ``depth`` blocks of width ``d`` (a multiple of 8), each with a fused QKV kernel
    (d, 3d) + bias, an output projection (d, d) + bias, an MLP (d, 4d), (4d, d) +
    biases, and two LayerNorms (scale, bias): 12 d² + 13 d parameters per block.
    Values are small random numbers (not zeros, so that no pass can be skipped).
    """
    d = max(8, round(math.sqrt(n_target / (12 * depth)) / 8) * 8)
    shapes: dict[str, tuple[int, ...]] = {}
    for i in range(depth):
        b = f"block{i}"
        shapes.update(
            {
                f"{b}/ln1_scale": (d,),
                f"{b}/ln1_bias": (d,),
                f"{b}/qkv_kernel": (d, 3 * d),
                f"{b}/qkv_bias": (3 * d,),
                f"{b}/out_kernel": (d, d),
                f"{b}/out_bias": (d,),
                f"{b}/ln2_scale": (d,),
                f"{b}/ln2_bias": (d,),
                f"{b}/mlp1_kernel": (d, 4 * d),
                f"{b}/mlp1_bias": (4 * d,),
                f"{b}/mlp2_kernel": (4 * d, d),
                f"{b}/mlp2_bias": (d,),
            }
        )
    keys = jax.random.split(jax.random.key(seed), len(shapes))
    return {
        name: (0.02 * jax.random.normal(k, shape, jnp.float32)).astype(dtype)
        for k, (name, shape) in zip(keys, shapes.items(), strict=True)
    }


def tree_size(tree: Any) -> int:
    return sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(tree))


def tree_bytes(tree: Any) -> int:
    return sum(
        int(np.prod(np.shape(x))) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree)
    )


def min_large_elems(params: Any) -> int:
    """Threshold for "parameter-sized": the smallest leaf with two or more dimensions."""
    sizes = [int(np.prod(x.shape)) for x in jax.tree.leaves(params) if np.ndim(x) >= 2]
    return min(sizes) if sizes else max(1, tree_size(params) // 2)


def large_elems(params: Any, min_elems: int) -> int:
    return sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(params) if x.size >= min_elems)


# ----------------------------------------------------------------------------
# Interleaved timing.


@dataclass
class Timed:
    """A callable to time: ``run(k)`` performs k calls and blocks on the result."""

    name: str
    run: Callable[[int], None]
    times: list[float] = field(default_factory=list)  # seconds per call, one per round


def interleaved_timing(
    items: Sequence[Timed],
    *,
    calls_per_block: int,
    rounds: int,
    warmup_blocks: int = 1,
    baseline: str | None = None,
    time_budget_s: float | None = None,
) -> dict[str, Any]:
    """Times ``items`` round-robin: each round runs one block of every item.

    The order of the items rotates from round to round (so that no item always
    follows the same neighbour). The ratio to ``baseline`` is computed per round
    from the same round's measurements, then summarised by its median and range:
    on a loaded machine adjacent measurements share most of the load.

    Returns a dict name -> {"median_ms", "min_ms", "max_ms", "times_ms", and with a
    baseline "ratio_median", "ratio_min", "ratio_max", "ratios"}; plus "rounds".
    """
    for it in items:
        for _ in range(warmup_blocks):
            it.run(calls_per_block)
    t_start = time.perf_counter()
    done = 0
    for r in range(rounds):
        order = list(items[r % len(items) :]) + list(items[: r % len(items)])
        for it in order:
            t0 = time.perf_counter()
            it.run(calls_per_block)
            it.times.append((time.perf_counter() - t0) / calls_per_block)
        done += 1
        if time_budget_s is not None and time.perf_counter() - t_start > time_budget_s:
            break
    out: dict[str, Any] = {"rounds": done, "calls_per_block": calls_per_block}
    base = next((it for it in items if it.name == baseline), None)
    for it in items:
        ms = [t * 1e3 for t in it.times]
        rec = {
            "median_ms": statistics.median(ms),
            "min_ms": min(ms),
            "max_ms": max(ms),
            "times_ms": ms,
        }
        if base is not None:
            ratios = [a / b for a, b in zip(it.times, base.times, strict=True)]
            rec.update(
                ratio_median=statistics.median(ratios),
                ratio_min=min(ratios),
                ratio_max=max(ratios),
                ratios=ratios,
            )
        out[it.name] = rec
    return out
