"""Shared helpers: environment report, parameter trees, interleaved timing, HLO analysis."""

from __future__ import annotations

import json
import math
import os
import platform
import re
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


def fmt_count(n: float) -> str:
    for unit, div in (("e8", 1e8), ("e7", 1e7), ("e6", 1e6), ("e5", 1e5)):
        if n >= div:
            return f"{n / div:.2g}{unit}"
    return str(int(n))


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


# ----------------------------------------------------------------------------
# Compiled-HLO analysis.


def cost_bytes_accessed(compiled: Any) -> float | None:
    """``bytes accessed`` from XLA's cost analysis (dict, or list of dicts in older jax).

    For a ``conditional`` XLA's analysis adds up the costs of all branches, so
    for PROFIT this over-counts what one call does; see :func:`hlo_passes`.
    """
    ca = compiled.cost_analysis()
    if isinstance(ca, list | tuple):
        ca = ca[0] if ca else None
    if not ca:
        return None
    return float(ca.get("bytes accessed", float("nan")))


def memory_analysis(compiled: Any) -> dict[str, int] | None:
    ma = compiled.memory_analysis()
    if ma is None:
        return None
    keys = (
        "argument_size_in_bytes",
        "output_size_in_bytes",
        "alias_size_in_bytes",
        "temp_size_in_bytes",
        "generated_code_size_in_bytes",
    )
    return {k: int(getattr(ma, k)) for k in keys if hasattr(ma, k)}


_SHAPE_RE = re.compile(r"\b(pred|s4|s8|s16|s32|s64|u4|u8|u16|u32|u64|bf16|f16|f32|f64)\[([\d,]*)\]")
_ITEMSIZE = {
    "pred": 1, "s4": 1, "s8": 1, "s16": 2, "s32": 4, "s64": 8, "u4": 1, "u8": 1, "u16": 2,
    "u32": 4, "u64": 8, "bf16": 2, "f16": 2, "f32": 4, "f64": 8,
}  # fmt: skip
_FREE_OPS = {
    "parameter",
    "get-tuple-element",
    "tuple",
    "bitcast",
    "constant",
    "conditional",
    "while",
    "call",
    "after-all",
    "opt-barrier",
    "partition-id",
    "replica-id",
}


def _arrays(type_str: str) -> list[tuple[str, int]]:
    """(dtype, element count) of every array in an HLO type string (tuples flattened)."""
    out = []
    for dt, dims in _SHAPE_RE.findall(type_str):
        n = 1
        for d in dims.split(","):
            if d:
                n *= int(d)
        out.append((dt, n))
    return out


def _matching_paren(s: str, i: int) -> int:
    depth = 0
    for j in range(i, len(s)):
        if s[j] in "({":
            depth += 1
        elif s[j] in ")}":
            depth -= 1
            if depth == 0:
                return j
    return len(s) - 1


@dataclass
class HloOp:
    name: str
    opcode: str
    out: list[tuple[str, int]]
    operands: list[str]
    called: list[str]
    line: str


@dataclass
class HloComputation:
    name: str
    is_entry: bool
    ops: list[HloOp]
    types: dict[str, list[tuple[str, int]]]


def parse_hlo(text: str) -> dict[str, HloComputation]:
    """A minimal parser of ``compiled.as_text()``: computations, ops, shapes, callees."""
    comps: dict[str, HloComputation] = {}
    cur: HloComputation | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line:
            continue
        if cur is None:
            m = re.match(r"^(ENTRY\s+)?%([\w.\-]+)\s*\(", line)
            if m and line.endswith("{"):
                cur = HloComputation(m.group(2), bool(m.group(1)), [], {})
            continue
        if line == "}":
            comps[cur.name] = cur
            cur = None
            continue
        m = re.match(r"^\s*(?:ROOT\s+)?%([\w.\-]+)\s*=\s*", line)
        if not m:
            continue
        rest = line[m.end() :]
        if rest.startswith("("):
            j = _matching_paren(rest, 0)
            type_str, rest = rest[: j + 1], rest[j + 1 :].lstrip()
        else:
            type_str, _, rest = rest.partition(" ")
        om = re.match(r"([\w\-]+)\(", rest)
        if not om:
            continue
        opcode = om.group(1)
        j = _matching_paren(rest, om.end() - 1)
        operands = re.findall(r"%([\w.\-]+)", rest[om.end() : j])
        attrs = rest[j + 1 :]
        called = re.findall(
            r"(?:calls|to_apply|body|condition|true_computation|false_computation)=%([\w.\-]+)",
            attrs,
        )
        bm = re.search(r"branch_computations=\{([^}]*)\}", attrs)
        if bm:
            called += re.findall(r"%([\w.\-]+)", bm.group(1))
        op = HloOp(m.group(1), opcode, _arrays(type_str), operands, called, line.strip())
        cur.ops.append(op)
        cur.types[op.name] = op.out
    return comps


@dataclass
class OpTraffic:
    computation: str
    name: str
    opcode: str
    reads: float  # in units of parameter-sized passes
    writes: float
    read_bytes: int
    write_bytes: int


def op_traffic(
    comps: dict[str, HloComputation], min_elems: int, unit_elems: int
) -> dict[str, list[OpTraffic]]:
    """Per executed computation: the large-array reads and writes of each top-level op.

    An array counts if it has at least ``min_elems`` elements; passes are element
    counts divided by ``unit_elems`` (the number of parameters in such arrays).
    Fused computations and reducers are not walked (their traffic is their
    fusion's operands and outputs); control-flow bodies and branches are.
    """
    reachable: list[str] = [c.name for c in comps.values() if c.is_entry]
    seen = set(reachable)
    out: dict[str, list[OpTraffic]] = {}
    while reachable:
        cname = reachable.pop(0)
        comp = comps[cname]
        rows = []
        for op in comp.ops:
            if op.opcode in ("conditional", "while", "call"):
                for c in op.called:
                    if c in comps and c not in seen:
                        seen.add(c)
                        reachable.append(c)
            if op.opcode in _FREE_OPS:
                continue
            w = [(dt, n) for dt, n in op.out if n >= min_elems]
            r = [(dt, n) for o in op.operands for dt, n in comp.types.get(o, []) if n >= min_elems]
            if not w and not r:
                continue
            rows.append(
                OpTraffic(
                    cname,
                    op.name,
                    op.opcode,
                    sum(n for _, n in r) / unit_elems,
                    sum(n for _, n in w) / unit_elems,
                    sum(n * _ITEMSIZE[dt] for dt, n in r),
                    sum(n * _ITEMSIZE[dt] for dt, n in w),
                )
            )
        out[cname] = rows
    return out


def large_copies(text: str, min_elems: int) -> tuple[int, int]:
    """(number, total bytes) of ``copy`` ops on arrays of at least ``min_elems`` elements."""
    n = b = 0
    for comp in parse_hlo(text).values():
        for op in comp.ops:
            if op.opcode == "copy":
                big = [(dt, k) for dt, k in op.out if k >= min_elems]
                if big:
                    n += 1
                    b += sum(k * _ITEMSIZE[dt] for dt, k in big)
    return n, b


def conditional_structure(text: str) -> list[tuple[str, str, list[str]]]:
    """(computation, conditional op, branch computations) for every conditional."""
    res = []
    for comp in parse_hlo(text).values():
        for op in comp.ops:
            if op.opcode == "conditional":
                res.append((comp.name, op.name, op.called))
    return res


def min_large_elems(params: Any) -> int:
    """Threshold for "parameter-sized": the smallest leaf with two or more dimensions."""
    sizes = [int(np.prod(x.shape)) for x in jax.tree.leaves(params) if np.ndim(x) >= 2]
    return min(sizes) if sizes else max(1, tree_size(params) // 2)


def large_elems(params: Any, min_elems: int) -> int:
    return sum(int(np.prod(np.shape(x))) for x in jax.tree.leaves(params) if x.size >= min_elems)


def median(xs: Sequence[float]) -> float:
    return statistics.median(xs)


def _op_name(line: str) -> str:
    m = re.search(r'op_name="([^"]*)"', line)
    if not m:
        return ""
    # Drop the jit(...) prefix and the cond/branch nesting, keep the last two parts.
    parts = [p for p in m.group(1).split("/") if not p.startswith(("jit(", "branch_", "cond"))]
    return "/".join(parts[-2:])


@dataclass
class PassRow:
    computation: str
    name: str
    opcode: str
    reads: int  # number of large operands, in units of the op's own largest array
    writes: int
    read_elems: int
    write_elems: int
    read_bytes: int
    write_bytes: int
    label: str


_ELEMENTWISE = frozenset(
    "add subtract multiply divide negate abs sqrt rsqrt convert maximum minimum select "
    "compare exponential log power".split()
)


def _sliced_read(fused: HloComputation, index: int) -> int | None:
    """Elements a fusion reads of its ``index``-th operand when every use is a
    ``slice`` (possibly through bitcasts and same-shaped elementwise ops, which a
    loop fusion evaluates only at the elements used); ``None`` when it is read whole."""
    pname = next(
        (
            op.name
            for op in fused.ops
            if op.opcode == "parameter" and f"parameter({index})" in op.line
        ),
        None,
    )
    if pname is None:
        return None
    size = sum(n for _, n in next(op for op in fused.ops if op.name == pname).out)
    frontier, seen, windows = [pname], set(), {}
    while frontier:
        name = frontier.pop()
        users = [op for op in fused.ops if name in op.operands]
        if not users:  # the fusion's result: read whole
            return None
        for u in users:
            if u.name in seen:
                continue
            seen.add(u.name)
            if u.opcode == "bitcast":
                frontier.append(u.name)
            elif u.opcode in _ELEMENTWISE and sum(n for _, n in u.out) == size:
                # a loop fusion computes an element only where it is used: an
                # elementwise op whose every use is sliced is read only there.
                frontier.append(u.name)
            elif u.opcode == "slice":
                spec = re.search(r"slice=\{[^}]*\}", u.line)
                # the same window reached along several paths is read once
                windows[spec.group(0) if spec else u.name] = sum(n for _, n in u.out)
            else:
                return None
    return sum(windows.values())


def conditional_kind(op: HloOp, n_large_leaves: int, min_elems: int) -> str:
    """Classifies a conditional by its parameter-sized outputs: "scalar" (none),
    "params" (exactly one tree of them: PROFIT's θ_ref save), "state" (more)."""
    n_big = sum(1 for _, n in op.out if n >= min_elems)
    if n_big == 0:
        return "scalar"
    return "params" if n_big <= n_large_leaves else "state"


def executed_passes(
    text: str,
    min_elems: int,
    choose: Callable[[HloOp], str] | None = None,
) -> list[PassRow]:
    """Large-array traffic of the ops one call executes.

    Walks the entry computation, ``while`` bodies once, and at each
    ``conditional`` one branch: ``choose(op)`` returns ``"max"`` (the branch with
    the most parameter-sized traffic) or ``"min"`` (the least); default "max".
    ``reads``/``writes`` count the large operands/outputs of each op in units of
    its own largest array; the element and byte totals are exact.
    """
    comps = parse_hlo(text)

    def walk(cname: str) -> list[PassRow]:
        comp = comps[cname]
        rows: list[PassRow] = []
        for op in comp.ops:
            if op.opcode == "conditional":
                branches = [walk(c) for c in op.called if c in comps]
                if branches:
                    pick = max if (choose is None or choose(op) == "max") else min
                    rows += pick(
                        branches, key=lambda rs: sum(r.read_bytes + r.write_bytes for r in rs)
                    )
                continue
            if op.opcode in ("while", "call"):
                for c in op.called:
                    if c in comps:
                        rows += walk(c)
                continue
            if op.opcode in _FREE_OPS:
                continue
            w = [(dt, n) for dt, n in op.out if n >= min_elems]
            r = []
            fused = comps.get(op.called[0]) if op.opcode == "fusion" and op.called else None
            for i, o in enumerate(op.operands):
                big = [(dt, n) for dt, n in comp.types.get(o, []) if n >= min_elems]
                if big and fused is not None:
                    sliced = _sliced_read(fused, i)
                    if sliced is not None:  # only slices of it are read
                        big = [(big[0][0], sliced)] if sliced else []
                r += big
            if not w and not r:
                continue
            unit = max(n for _, n in w + r)
            rows.append(
                PassRow(
                    cname,
                    op.name,
                    op.opcode,
                    round(sum(n for _, n in r) / unit),
                    round(sum(n for _, n in w) / unit),
                    sum(n for _, n in r),
                    sum(n for _, n in w),
                    sum(n * _ITEMSIZE[dt] for dt, n in r),
                    sum(n * _ITEMSIZE[dt] for dt, n in w),
                    _op_name(op.line),
                )
            )
        return rows

    entry = next(c.name for c in comps.values() if c.is_entry)
    return walk(entry)


def summarize_passes(rows: list[PassRow], unit_elems: int) -> dict[str, Any]:
    """Totals in parameter-sized passes, and a histogram of op signatures."""
    hist: dict[str, int] = {}
    for r in rows:
        key = f"{r.opcode}:{r.reads}R{r.writes}W" + (f" ({r.label})" if r.label else "")
        hist[key] = hist.get(key, 0) + 1
    return {
        "read_passes": sum(r.read_elems for r in rows) / unit_elems,
        "write_passes": sum(r.write_elems for r in rows) / unit_elems,
        "bytes_per_param": sum(r.read_bytes + r.write_bytes for r in rows) / unit_elems,
        "n_ops": len(rows),
        "op_signatures": dict(sorted(hist.items(), key=lambda kv: -kv[1])),
    }
