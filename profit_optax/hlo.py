"""Counts the collectives of a compiled XLA program, from its HLO text.

For checking what a training step communicates once it is sharded: which
collectives the compiler emitted, on how many bytes, and whether they run on
every call or only inside a branch of a conditional (PROFIT's main phase is a
``jax.lax.cond``). Works on the optimized HLO that
``jax.jit(f).lower(*args).compile().as_text()`` returns, on any backend.

Examples:
  >>> from profit_optax import hlo
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
from collections.abc import Iterable, Sequence
from typing import Any

__all__ = [
    "KINDS",
    "Collective",
    "buffer_multiset",
    "collectives",
    "compiled_text",
    "summarize",
]

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
_ARRAY_RE = re.compile(r"\b([a-z]+[0-9]*(?:e[0-9]m[0-9][a-z]*)?)\[([0-9,]*)\]")
_HEADER_RE = re.compile(r"^(ENTRY\s+)?%?([\w.\-]+)\s*\(.*\{\s*$")
_INSTR_RE = re.compile(r"^\s+(?:ROOT\s+)?%?([\w.\-]+)\s*=\s*(.*)$")
_CALLEE_RE = re.compile(
    r"\b(branch_computations|true_computation|false_computation|body|condition|calls|to_apply)"
    r"=(\{[^}]*\}|%?[\w.\-]+)"
)

Shape = tuple[tuple[str, tuple[int, ...]], ...]


def _dtype_bytes(dtype: str) -> int:
    if dtype in _DTYPE_BYTES:
        return _DTYPE_BYTES[dtype]
    if dtype.startswith("f8"):
        return 1
    if dtype.startswith("f4"):
        return 1
    raise ValueError(f"unknown HLO element type {dtype!r}")


def _parse_shapes(text: str) -> Shape:
    """Every ``dtype[dims]`` array in a (possibly tuple) HLO shape string."""
    out = []
    for dtype, dims in _ARRAY_RE.findall(text):
        if dtype == "token":
            continue
        out.append((dtype, tuple(int(d) for d in dims.split(",") if d)))
    return tuple(out)


def _nbytes(shapes: Shape) -> int:
    return sum(_dtype_bytes(t) * math.prod(s) for t, s in shapes)


def _split_shape(rest: str) -> tuple[str, str]:
    """Splits ``'<shape> opcode(...)...'`` into the shape and what follows it."""
    rest = rest.lstrip()
    if rest.startswith("("):
        depth = 0
        for i, ch in enumerate(rest):
            depth += ch == "("
            depth -= ch == ")"
            if depth == 0:
                return rest[: i + 1], rest[i + 1 :].lstrip()
    head, _, tail = rest.partition(" ")
    return head, tail.lstrip()


def _operand_names(call: str) -> list[str]:
    """Names of the operands in ``'opcode(%a, f32[2] %b, ...), attrs'``."""
    start = call.find("(")
    depth = 0
    for i in range(start, len(call)):
        depth += call[i] == "("
        depth -= call[i] == ")"
        if depth == 0:
            return re.findall(r"%([\w.\-]+)", call[start + 1 : i])
    return []


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
        shapes = self.result_shapes if self.kind == "all-gather" else self.operand_shapes
        return _nbytes(shapes)

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


def compiled_text(compiled: Any) -> str:
    """HLO text of a ``jax.stages.Compiled`` (all modules joined)."""
    text = compiled.as_text()
    if isinstance(text, str):
        return text
    return "\n".join(text)


def collectives(hlo_text: str, num_devices: int = 1) -> list[Collective]:
    """Parses every collective instruction out of HLO text.

    Args:
      hlo_text: HLO module text (``compiled.as_text()``).
      num_devices: group size to report when the instruction names no groups.

    Returns:
      The collectives in textual order.
    """
    comps: dict[str, dict[str, tuple[str, str]]] = {}  # comp -> name -> (shape, rest)
    order: list[tuple[str, str]] = []
    callers: dict[str, set[tuple[str, str]]] = {}  # callee -> {(caller comp, caller opcode)}
    entry = None
    current = None
    for line in hlo_text.splitlines():
        if not line.strip() or line.startswith("HloModule"):
            continue
        if not line.startswith((" ", "\t")):
            m = _HEADER_RE.match(line)
            if m:
                current = m.group(2)
                comps[current] = {}
                if m.group(1):
                    entry = current
            elif line.strip() == "}":
                current = None
            continue
        m = _INSTR_RE.match(line)
        if not m or current is None:
            continue
        name, rest = m.groups()
        shape, call = _split_shape(rest)
        comps[current][name] = (shape, call)
        order.append((current, name))
        opcode = call.split("(", 1)[0].strip()
        for _, target in _CALLEE_RE.findall(call):
            for callee in re.findall(r"%?([\w.\-]+)", target.strip("{}")):
                callers.setdefault(callee, set()).add((current, opcode))

    def context(comp: str, seen: frozenset = frozenset()) -> tuple[bool, bool]:
        if comp == entry or comp in seen or comp not in callers:
            return False, False
        cond = loop = False
        for caller, opcode in callers[comp]:
            c, lp = context(caller, seen | {comp})
            cond |= c or opcode == "conditional"
            loop |= lp or opcode == "while"
        return cond, loop

    done_of: dict[tuple[str, str], str] = {}
    for comp, name in order:
        shape, call = comps[comp][name]
        opcode = call.split("(", 1)[0].strip()
        if opcode.endswith("-done"):
            for operand in _operand_names(call):
                done_of[(comp, operand)] = name

    out = []
    for comp, name in order:
        shape, call = comps[comp][name]
        opcode = call.split("(", 1)[0].strip()
        base = opcode.removesuffix("-start")
        if base not in KINDS or opcode.endswith("-done"):
            continue
        operands = _operand_names(call)
        operand_shapes = tuple(
            s for o in operands if o in comps[comp] for s in _parse_shapes(comps[comp][o][0])
        )
        if opcode.endswith("-start"):
            done = done_of.get((comp, name))
            result_shapes = _parse_shapes(comps[comp][done][0]) if done else _parse_shapes(shape)
        else:
            result_shapes = _parse_shapes(shape)
        if base == "all-reduce" and not operand_shapes:  # operands not found: same as result
            operand_shapes = result_shapes
        op_name = re.search(r'op_name="([^"]*)"', call)
        cond, loop = context(comp)
        out.append(
            Collective(
                kind=base,
                name=name,
                computation=comp,
                conditional=cond,
                in_loop=loop,
                operand_shapes=operand_shapes,
                result_shapes=result_shapes,
                group_size=_group_size(call, num_devices),
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
