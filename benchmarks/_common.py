"""Shared helpers: environment and provenance, parameter trees, the training step every
benchmark compiles, the subprocess runner and the interleaved timing.

The analysis of compiled programs (HLO) is in :mod:`benchmarks.hlo`.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

ROOT = Path(__file__).resolve().parents[1]

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
        # JAX's persistent compilation cache (JAX_COMPILATION_CACHE_DIR; the test run sets
        # one): with it, a compilation can be a read of an earlier one.
        "compilation_cache": jax.config.jax_compilation_cache_dir or None,
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
        + (
            "\n- JAX's persistent compilation cache was on: compile times may be cache reads"
            if info.get("compilation_cache")
            else ""
        )
    )


def report(
    res: dict[str, Any],
    markdown: Callable[[dict[str, Any]], str],
    json_path: str | None,
    *,
    name: str,
    argv: Sequence[str] | None,
) -> dict[str, Any]:
    """Prints the environment and ``markdown(res)``; with ``json_path``, adds the provenance
    (``res["environment"]``: the command ``python -m benchmarks.<name> ...``, git commit,
    versions, date) and writes ``res`` there as JSON. Returns ``res``."""
    print(env_markdown(res["env"]))
    print()
    print(markdown(res))
    if json_path:
        from experiments.common import results  # provenance: command, commit, versions

        args = " ".join(argv if argv is not None else sys.argv[1:])
        res["environment"] = results.environment(f"python -m benchmarks.{name} {args}".strip())
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
# The training step: built one way for every benchmark.


def make_step(
    tx: optax.GradientTransformation,
    loss_fn: Callable[[Any, Any], jax.Array] | None = None,
    *,
    one_call: bool = False,
    return_loss: bool = True,
    prepare_state: Callable[[Any], Any] | None = None,
) -> Callable:
    """The step ``(stored, state, x) -> (stored, state[, loss])`` that the benchmarks compile.

    ``loss_fn=None``: ``x`` is the gradient; the step is ``tx.update`` and
    ``optax.apply_updates`` alone (the update benchmark). Otherwise ``x`` is a batch
    and the gradient is ``jax.value_and_grad(loss_fn)(params, x)``, ``params`` being
    ``stored`` or, for Lookahead's ``LookaheadParams``, its fast weights; the loss is
    returned unless ``return_loss=False``. ``one_call=True``: every leaf of ``x`` is
    stacked ``n_ref + 1`` deep; the first slice gives the gradient and ``tx.update``
    receives ``grad_fn(p, i)``, the gradient on slice ``i + 1`` (PROFIT's one-call
    mode). ``prepare_state`` maps the state before the update (e.g. fixes PROFIT's
    phase at compile time).
    """

    def step(stored, state, x):
        if prepare_state is not None:
            state = prepare_state(state)
        extra: dict[str, Any] = {}
        loss = None
        if loss_fn is None:
            grads = x
        else:
            params = stored.fast if isinstance(stored, optax.LookaheadParams) else stored
            batch = jax.tree.map(lambda b: b[0], x) if one_call else x
            loss, grads = jax.value_and_grad(loss_fn)(params, batch)
            if one_call:
                extra["grad_fn"] = lambda p, i: jax.grad(loss_fn)(
                    p, jax.tree.map(lambda b: b[i + 1], x)
                )
        updates, state = tx.update(grads, state, stored, **extra)
        stored = optax.apply_updates(stored, updates)
        return (stored, state) if loss is None or not return_loss else (stored, state, loss)

    return step


def jit_step(step: Callable, *, donate: bool = True) -> Any:
    """``jax.jit(step)``, the stored parameters and the optimizer state donated."""
    return jax.jit(step, donate_argnums=(0, 1) if donate else ())


def abstract(tree: Any) -> Any:
    """Shapes and dtypes of ``tree``'s arrays (``ShapeDtypeStruct`` leaves are kept as they are)."""
    keep = lambda x: isinstance(x, jax.ShapeDtypeStruct)
    return jax.tree.map(lambda x: x if keep(x) else jax.ShapeDtypeStruct(x.shape, x.dtype), tree)


def compile_step(step: Callable, *args: Any, donate: bool = True) -> Any:
    """``jit_step(step)`` lowered for the shapes of ``args`` and compiled (nothing executed)."""
    return jit_step(step, donate=donate).lower(*abstract(args)).compile()


def fresh_copy(tree: Any) -> Any:
    """Leaf-by-leaf copies: no two leaves share a buffer (donation needs that).

    ``optax.contrib.sam``'s init stores ``cache=params`` and
    ``optax.LookaheadParams.init_synced`` one buffer as fast and slow weights.
    """
    return jax.tree.map(jnp.copy, tree)


# ----------------------------------------------------------------------------
# One configuration in a process of its own.


def subprocess_env(devices: int | None = None) -> dict[str, str]:
    """This process's environment for a child that imports ``benchmarks`` from this tree;
    with ``devices``, on that many (simulated) CPU devices."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if devices is not None:
        flags = [f for f in env.get("XLA_FLAGS", "").split() if "device_count" not in f]
        env["XLA_FLAGS"] = " ".join([*flags, f"--xla_force_host_platform_device_count={devices}"])
        env["JAX_PLATFORMS"] = "cpu"
    return env


def run_subprocess(
    module: str, args: Sequence[str], *, devices: int | None = None, timeout: float | None = None
) -> str:
    """Runs ``python -m benchmarks.<module> *args`` in a fresh process and returns its stdout.

    A process of its own gives a configuration its own memory high-water mark and
    compilation, or a device count that this process, its backend started, cannot have.

    Raises:
      RuntimeError: the process failed; the message ends with its stderr.
    """
    cmd = [sys.executable, "-m", f"benchmarks.{module}", *args]
    proc = subprocess.run(
        cmd,
        env=subprocess_env(devices),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(cmd[1:])} failed (rc {proc.returncode}):\n{proc.stderr[-4000:]}"
        )
    return proc.stdout


# ----------------------------------------------------------------------------
# Interleaved timing.


@dataclass
class Timed:
    """A callable to time: ``run(k)`` performs k calls and blocks on the result."""

    name: str
    run: Callable[[int], None]
    times: list[float] = field(default_factory=list)  # seconds per call, one per round
    faults: list[float] = field(default_factory=list)  # minor page faults per call, per round


def minor_faults() -> int | None:
    """The process's minor page faults so far (all threads; ``ru_minflt``: on Linux the
    faults served without I/O, on macOS page reclaims; None where ``resource`` is missing).

    Load-independent beside the times: a program whose temporaries the allocator maps
    afresh on every call faults each of their pages every call
    (``benchmarks/analysis/lean_temp_faults.md``).
    """
    try:
        import resource
    except ImportError:  # not on Unix
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


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

    Returns a dict name -> {"median_ms", "min_ms", "max_ms", "times_ms",
    "faults_per_call" (median over rounds of the minor page faults per call, where the
    platform counts them), and with a baseline "ratio_median", "ratio_min", "ratio_max",
    "ratios"}; plus "rounds", "calls_per_block" and "load1" (the 1-minute load average at
    the start of each round).
    """
    for it in items:
        for _ in range(warmup_blocks):
            it.run(calls_per_block)
    t_start = time.perf_counter()
    done = 0
    loads: list[float | None] = []
    for r in range(rounds):
        la = load_average()
        loads.append(None if la is None else la[0])
        order = list(items[r % len(items) :]) + list(items[: r % len(items)])
        for it in order:
            f0 = minor_faults()
            t0 = time.perf_counter()
            it.run(calls_per_block)
            it.times.append((time.perf_counter() - t0) / calls_per_block)
            f1 = minor_faults()
            if f0 is not None and f1 is not None:
                it.faults.append((f1 - f0) / calls_per_block)
        done += 1
        if time_budget_s is not None and time.perf_counter() - t_start > time_budget_s:
            break
    out: dict[str, Any] = {"rounds": done, "calls_per_block": calls_per_block, "load1": loads}
    base = next((it for it in items if it.name == baseline), None)
    for it in items:
        ms = [t * 1e3 for t in it.times]
        rec = {
            "median_ms": statistics.median(ms),
            "min_ms": min(ms),
            "max_ms": max(ms),
            "times_ms": ms,
        }
        if it.faults:
            rec["faults_per_call"] = statistics.median(it.faults)
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
