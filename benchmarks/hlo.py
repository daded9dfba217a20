"""Analysis of compiled XLA programs from their HLO text, for the benchmarks and the tests.

One parser, :func:`parse_hlo`, reads the optimized HLO that
``jax.jit(f).lower(*args).compile().as_text()`` returns (any backend) into
computations and instructions with their shapes and callees. What is read off it:

* **passes over memory**: :func:`executed_passes` (the parameter-sized reads and
  writes of the instructions one call executes, choosing a branch at each
  conditional), :func:`summarize_passes`, :func:`large_copies`,
  :func:`param_sized_copies`, :func:`conditional_kind`;
* **collectives**: :func:`collectives` (which collectives, on how many bytes,
  inside a conditional branch or a loop or not), :func:`summarize`,
  :func:`buffer_multiset`;
* XLA's own analyses of a compiled program: :func:`cost_bytes_accessed`,
  :func:`memory_analysis`.

This module imports neither jax nor the package: it works on text and on the
``Compiled`` objects it is given.

Examples:
  >>> from benchmarks import hlo
  >>> text = '''
  ... HloModule m, entry_computation_layout={(f32[4,8]{1,0})->f32[32,8]{1,0}}
  ...
  ... %add (a: f32[], b: f32[]) -> f32[] {
  ...   %a = f32[] parameter(0)
  ...   %b = f32[] parameter(1)
  ...   ROOT %s = f32[] add(%a, %b)
  ... }
  ...
  ... ENTRY %main (p: f32[4,8]) -> f32[32,8] {
  ...   %p = f32[4,8]{1,0} parameter(0)
  ...   %r = f32[] reduce(%p, %z), dimensions={0,1}, to_apply=%add
  ...   %ar = (f32[], f32[4,8]{1,0}) all-reduce(%r, %p), replica_groups=[1,8]<=[8], to_apply=%add
  ...   ROOT %ag = f32[32,8]{1,0} all-gather(%p), replica_groups={{0,1,2,3,4,5,6,7}}, dimensions={0}
  ... }
  ... '''
  >>> for c in hlo.collectives(text):
  ...     print(c.kind, c.operand_shapes, c.result_shapes, c.group_size, c.payload_bytes)
  all-reduce (('f32', ()), ('f32', (4, 8))) (('f32', ()), ('f32', (4, 8))) 8 132
  all-gather (('f32', (4, 8)),) (('f32', (32, 8)),) 8 1024
  >>> hlo.summarize(hlo.collectives(text))
  {'all-gather': {'ops': 1, 'buffers': 1, 'payload_bytes': 1024}, 'all-reduce': {'ops': 1, 'buffers': 2, 'payload_bytes': 132}}
"""  # noqa: E501

from __future__ import annotations

import dataclasses
import math
import re
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

#: ``(dtype, dims)`` of each array in an HLO shape (tuples flattened).
Shape = tuple[tuple[str, tuple[int, ...]], ...]

# ----------------------------------------------------------------------------
# Element types.

_DTYPE_BYTES = {
    "pred": 1,
    "s2": 1,
    "s4": 1,
    "s8": 1,
    "s16": 2,
    "s32": 4,
    "s64": 8,
    "u2": 1,
    "u4": 1,
    "u8": 1,
    "u16": 2,
    "u32": 4,
    "u64": 8,
    "f16": 2,
    "bf16": 2,
    "f32": 4,
    "f64": 8,
    "c64": 8,
    "c128": 16,
}


def dtype_bytes(dtype: str) -> int:
    """Bytes per element of an HLO element type (``f32``, ``bf16``, ``f8e4m3fn``, ...);
    sub-byte types count one byte."""
    if dtype in _DTYPE_BYTES:
        return _DTYPE_BYTES[dtype]
    if dtype.startswith(("f8", "f4")):
        return 1
    raise ValueError(f"unknown HLO element type {dtype!r}")


_ARRAY_RE = re.compile(r"\b([a-z]+[0-9]*(?:e[0-9]m[0-9][a-z]*)?)\[([0-9,]*)\]")


def parse_shape(text: str) -> Shape:
    """Every ``dtype[dims]`` array in a (possibly tuple) HLO shape string."""
    out = []
    for dtype, dims in _ARRAY_RE.findall(text):
        if dtype == "token":
            continue
        out.append((dtype, tuple(int(d) for d in dims.split(",") if d)))
    return tuple(out)


def nbytes(shapes: Shape) -> int:
    return sum(dtype_bytes(t) * math.prod(s) for t, s in shapes)


# ----------------------------------------------------------------------------
# The parser.


@dataclasses.dataclass
class HloOp:
    """One instruction: its result ``shapes``, operand names, called computations."""

    name: str
    opcode: str
    shapes: Shape
    operands: list[str]
    called: list[str]
    line: str

    @property
    def out(self) -> list[tuple[str, int]]:
        """(dtype, element count) of each result array."""
        return [(dt, math.prod(dims)) for dt, dims in self.shapes]


@dataclasses.dataclass
class HloComputation:
    name: str
    is_entry: bool
    ops: list[HloOp]
    by_name: dict[str, HloOp]

    def out(self, name: str) -> list[tuple[str, int]]:
        """(dtype, element count) of each result array of instruction ``name`` (none for
        a name that is not an instruction of this computation)."""
        op = self.by_name.get(name)
        return op.out if op is not None else []


_HEADER_RE = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s*\(")
_INSTR_RE = re.compile(r"^\s*(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*")
_CALLEE_RE = re.compile(
    r"\b(branch_computations|true_computation|false_computation|body|condition|calls|to_apply)"
    r"=(\{[^}]*\}|%?[\w.\-]+)"
)


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


def parse_hlo(text: str) -> dict[str, HloComputation]:
    """The computations of HLO module text, by name, with their instructions in order."""
    comps: dict[str, HloComputation] = {}
    cur: HloComputation | None = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line:
            continue
        if cur is None:
            m = _HEADER_RE.match(line)
            if m and line.endswith("{"):
                cur = HloComputation(m.group(2), bool(m.group(1)), [], {})
            continue
        if line == "}":
            comps[cur.name] = cur
            cur = None
            continue
        m = _INSTR_RE.match(line)
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
        j = _matching_paren(rest, om.end() - 1)
        operands = re.findall(r"%([\w.\-]+)", rest[om.end() : j])
        called = [
            callee
            for _, target in _CALLEE_RE.findall(rest[j + 1 :])
            for callee in re.findall(r"%?([\w.\-]+)", target.strip("{}"))
        ]
        op = HloOp(m.group(1), om.group(1), parse_shape(type_str), operands, called, line.strip())
        cur.ops.append(op)
        cur.by_name[op.name] = op
    return comps


def compiled_text(compiled: Any) -> str:
    """HLO text of a ``jax.stages.Compiled`` (all modules joined)."""
    text = compiled.as_text()
    if isinstance(text, str):
        return text
    return "\n".join(text)


# ----------------------------------------------------------------------------
# XLA's own analyses.


def cost_bytes_accessed(compiled: Any) -> float | None:
    """``bytes accessed`` from XLA's cost analysis (dict, or list of dicts in older jax).

    For a ``conditional`` XLA's analysis adds up the costs of all branches, so
    for PROFIT this over-counts what one call does; see :func:`executed_passes`.
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


# ----------------------------------------------------------------------------
# Passes over memory.

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


def large_copies(text: str, min_elems: int) -> tuple[int, int]:
    """(number, total bytes) of ``copy`` ops on arrays of at least ``min_elems`` elements."""
    n = b = 0
    for comp in parse_hlo(text).values():
        for op in comp.ops:
            if op.opcode == "copy":
                big = [(dt, k) for dt, k in op.out if k >= min_elems]
                if big:
                    n += 1
                    b += sum(k * dtype_bytes(dt) for dt, k in big)
    return n, b


def param_sized_copies(
    text: str, dims: tuple[int, ...], dtype: str = "f32"
) -> dict[str, list[str]]:
    """Per computation (the entry one keyed ``"ENTRY"``), the operands of the ``copy`` ops
    whose result is one ``dtype[dims]`` array."""
    copies: dict[str, list[str]] = {}
    for comp in parse_hlo(text).values():
        found = [
            op.operands[0] if op.operands else ""
            for op in comp.ops
            if op.opcode == "copy" and op.shapes == ((dtype, tuple(dims)),)
        ]
        if found:
            copies["ENTRY" if comp.is_entry else comp.name] = found
    return copies


def _op_name(line: str) -> str:
    m = re.search(r'op_name="([^"]*)"', line)
    if not m:
        return ""
    # Drop the jit(...) prefix and the cond/branch nesting, keep the last two parts.
    parts = [p for p in m.group(1).split("/") if not p.startswith(("jit(", "branch_", "cond"))]
    return "/".join(parts[-2:])


@dataclasses.dataclass
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
    size = sum(n for _, n in fused.out(pname))
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
                big = [(dt, n) for dt, n in comp.out(o) if n >= min_elems]
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
                    sum(n * dtype_bytes(dt) for dt, n in r),
                    sum(n * dtype_bytes(dt) for dt, n in w),
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


# ----------------------------------------------------------------------------
# Collectives.

#: Collective opcodes (synchronous form; ``-start``/``-done`` async pairs are folded in).
KINDS = (
    "all-reduce",
    "all-gather",
    "reduce-scatter",
    "all-to-all",
    "ragged-all-to-all",
    "collective-permute",
    "collective-broadcast",
)


def _group_size(attrs: str, default: int) -> int:
    """Participants per group, from ``replica_groups`` (list, iota or mesh form)."""
    m = re.search(r"replica_groups=mesh\[([^\]]*)\]\s*\{([^}]*)\}", attrs)
    if m:
        sizes = dict(re.findall(r"'([^']+)'=(\d+)", m.group(1)))
        return math.prod(int(sizes[a]) for a in re.findall(r"'([^']+)'", m.group(2)))
    m = re.search(r"replica_groups=\[([0-9,]+)\]<=", attrs)
    if m:
        return int(m.group(1).split(",")[-1])
    m = re.search(r"replica_groups=\{\{([0-9,]*)\}", attrs)
    if m and m.group(1):
        return len(m.group(1).split(","))
    m = re.search(r"source_target_pairs=\{([^}]*(?:\}[^}]*)*)\}", attrs)
    if m:
        return len(re.findall(r"\{", m.group(1))) or default
    return default


@dataclasses.dataclass(frozen=True)
class Collective:
    """One collective instruction of a compiled program.

    Attributes:
      kind: the collective, e.g. ``"all-reduce"`` (an async ``-start``/``-done``
        pair is reported once, under the synchronous name).
      name: the instruction's name (of the ``-start`` for an async pair).
      computation: the HLO computation it is in.
      conditional: True if that computation is (reached from) a branch of a
        ``conditional``: it runs only on calls that take that branch.
      in_loop: True if it is (reached from) the body of a ``while`` loop.
      operand_shapes: ``(dtype, dims)`` of each operand, per device.
      result_shapes: ``(dtype, dims)`` of each result, per device.
      group_size: devices that take part in each group.
      op_name: the JAX operation it came from (``metadata op_name``), if recorded.
    """

    kind: str
    name: str
    computation: str
    conditional: bool
    in_loop: bool
    operand_shapes: Shape
    result_shapes: Shape
    group_size: int
    op_name: str = ""

    @property
    def payload_bytes(self) -> int:
        """Bytes of the logical buffer the collective works on, per device.

        All-reduce, reduce-scatter, all-to-all, collective-permute/broadcast:
        the operands; all-gather: the gathered result.
        """
        return nbytes(self.buffers)

    @property
    def buffers(self) -> Shape:
        """The buffers, one per combined operand, whose sizes ``payload_bytes`` sums."""
        return self.result_shapes if self.kind == "all-gather" else self.operand_shapes

    def traffic_bytes(self) -> float:
        """Bytes each device sends under the bandwidth-optimal (ring) algorithm.

        all-reduce 2(D−1)/D·n, all-gather and reduce-scatter (D−1)/D·n (n the
        full buffer), all-to-all (D−1)/D·n, collective-permute n.
        """
        d, n = self.group_size, self.payload_bytes
        if d <= 1:
            return 0.0
        if self.kind == "all-reduce":
            return 2 * (d - 1) / d * n
        if self.kind in ("collective-permute", "collective-broadcast"):
            return float(n)
        return (d - 1) / d * n


def collectives(hlo_text: str, num_devices: int = 1) -> list[Collective]:
    """Every collective instruction of HLO text, in textual order.

    Args:
      hlo_text: HLO module text (``compiled.as_text()``).
      num_devices: group size to report when the instruction names no groups.
    """
    comps = parse_hlo(hlo_text)
    entry = next((c.name for c in comps.values() if c.is_entry), None)
    callers: dict[str, set[tuple[str, str]]] = {}  # callee -> {(caller comp, caller opcode)}
    done_of: dict[tuple[str, str], HloOp] = {}  # (comp, -start name) -> its -done
    for comp in comps.values():
        for op in comp.ops:
            for callee in op.called:
                callers.setdefault(callee, set()).add((comp.name, op.opcode))
            if op.opcode.endswith("-done"):
                for operand in op.operands:
                    done_of[(comp.name, operand)] = op

    def context(comp: str, seen: frozenset = frozenset()) -> tuple[bool, bool]:
        if comp == entry or comp in seen or comp not in callers:
            return False, False
        cond = loop = False
        for caller, opcode in callers[comp]:
            c, lp = context(caller, seen | {comp})
            cond |= c or opcode == "conditional"
            loop |= lp or opcode == "while"
        return cond, loop

    out = []
    for comp in comps.values():
        for op in comp.ops:
            base = op.opcode.removesuffix("-start")
            if base not in KINDS:
                continue
            operand_shapes = tuple(
                s for o in op.operands if o in comp.by_name for s in comp.by_name[o].shapes
            )
            done = done_of.get((comp.name, op.name)) if op.opcode.endswith("-start") else None
            result_shapes = done.shapes if done is not None else op.shapes
            if base == "all-reduce" and not operand_shapes:  # operands not found: as result
                operand_shapes = result_shapes
            op_name = re.search(r'op_name="([^"]*)"', op.line)
            cond, loop = context(comp.name)
            out.append(
                Collective(
                    kind=base,
                    name=op.name,
                    computation=comp.name,
                    conditional=cond,
                    in_loop=loop,
                    operand_shapes=operand_shapes,
                    result_shapes=result_shapes,
                    group_size=_group_size(op.line, num_devices),
                    op_name=op_name.group(1) if op_name else "",
                )
            )
    return out


def summarize(colls: Iterable[Collective]) -> dict[str, dict[str, int]]:
    """Per kind: ``ops`` (instructions), ``buffers`` (combined operands), ``payload_bytes``."""
    out: dict[str, dict[str, int]] = {}
    for c in colls:
        s = out.setdefault(c.kind, {"ops": 0, "buffers": 0, "payload_bytes": 0})
        s["ops"] += 1
        s["buffers"] += len(c.buffers)
        s["payload_bytes"] += c.payload_bytes
    return dict(sorted(out.items()))


def buffer_multiset(colls: Sequence[Collective]) -> Counter:
    """Multiset of ``(kind, conditional, dtype, dims)`` over every buffer of every collective.

    XLA's combiners merge independent collectives into one tuple-shaped
    instruction, differently from program to program; comparing two programs
    buffer by buffer (``Counter`` subtraction) sees through that.
    """
    return Counter((c.kind, c.conditional, dtype, dims) for c in colls for dtype, dims in c.buffers)
