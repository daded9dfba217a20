"""Update cost: one jitted `update + apply_updates` call; PROFIT(Adam) vs Adam, SAM, Lookahead.

Measures, on the installed backend, for transformer-like parameter trees of
several sizes (``--sizes``) and dtypes (``--dtypes``):

* wall-clock time per call, averaged over full cycles (blocks of
  ``lcm(periods)`` = 12 calls), all methods interleaved round-robin within each
  round, the ratio to Adam taken per round; medians and ranges over rounds;
* the time of each PROFIT phase alone (the state's ``count`` forced to the
  phase before every call, from outside the jitted step, so that the program
  is the real one);
* deterministic, load-independent figures from the compiled program: XLA's
  ``bytes accessed`` per parameter, the number and bytes of parameter-sized
  ``copy`` ops, and, per phase, the parameter-sized reads and writes of every op
  one call executes (see :func:`phase_analysis`).

Every step is ``_common.make_step(tx)`` jitted with the parameters and the state
donated (``--no-donate`` also times it without donation; ``--no-timing`` only
analyses the compiled programs). The optimizer states (and Lookahead's
``LookaheadParams``) are copied leaf by leaf after ``init``: SAM's init stores
``cache=params`` and ``LookaheadParams.init_synced`` stores the same buffer as
fast and slow weights, which cannot be donated twice.

    PYTHONPATH=. python -m benchmarks.update_cost --sizes 1e5 1e6 1e7 3e7
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax

import profit_optax
from benchmarks import _common as C
from benchmarks import hlo

LR = 1e-4


@dataclass
class Spec:
    """A method under test.

    ``phases`` lists (label, counter value, calls per cycle in that phase, branch
    policy): the policy maps a conditional's kind (see
    :func:`benchmarks.hlo.conditional_kind`) to the branch that phase takes,
    ``"max"`` (the working branch) or ``"min"`` (the pass-through one); ``force``
    returns the state with its cycle counter set to a value.
    """

    name: str
    tx: optax.GradientTransformation
    period: int
    stored_fn: Callable[[Any], Any]
    phases: list[tuple[str, int, int, dict[str, str] | None]]
    force: Callable[[Any, Any], Any] | None


def _force_profit(state, k):
    return state._replace(count=k)


def _force_sync(state, k):  # SAMState and LookaheadState: steps_since_sync
    return state._replace(steps_since_sync=k)


# Which branch of PROFIT's conditionals each phase takes: "state" = the main phase
# (θ_ref, main state, diagnostics), "params" = the θ_ref save, "scalar" = ‖g‖² of a
# reference gradient.
_FIRST = {"state": "min", "params": "max", "scalar": "max"}
_MIDDLE = {"state": "min", "params": "min", "scalar": "max"}
_MAIN = {"state": "max", "params": "min", "scalar": "min"}


def _profit_phases(n_ref: int) -> list[tuple[str, int, int, dict[str, str]]]:
    phases = [("ref (first, saves θ_ref)", 0, 1, _FIRST)]
    if n_ref > 1:
        phases.append(("ref (middle)", 1, n_ref - 1, _MIDDLE))
    phases.append(("main", n_ref, 1, _MAIN))
    return phases


def profit_spec(name: str, tx: optax.GradientTransformation, n_ref: int) -> Spec:
    """A PROFIT method in alternating mode: a cycle of ``n_ref + 1`` calls, its phases."""
    return Spec(name, tx, n_ref + 1, lambda p: p, _profit_phases(n_ref), _force_profit)


def method_specs(names: list[str] | None = None) -> list[Spec]:
    """The methods of the update benchmark (Adam first: it is the baseline)."""
    ident = lambda p: p
    specs = [Spec("adam", optax.adam(LR), 1, ident, [("all", 0, 1, None)], None)]
    for ref_name, ref, n_refs in (("sgd", optax.sgd(LR / 100), (1, 2, 3)), ("auto", None, (1, 3))):
        for n_ref in n_refs:
            tx = profit_optax.profit(optax.adam(LR), ref, n_ref=n_ref)
            specs.append(profit_spec(f"profit_{ref_name}_n{n_ref}", tx, n_ref))
    specs.append(
        Spec(
            "profit_lean",
            profit_optax.profit_lean(optax.adam(LR)),
            1,
            ident,
            [("all", 0, 1, None)],
            None,
        )
    )
    adv = optax.chain(optax.contrib.normalize(), optax.sgd(0.05))
    specs.append(
        Spec(
            "sam",
            optax.contrib.sam(optax.adam(LR), adv, sync_period=2, opaque_mode=False),
            2,
            ident,
            [("adversarial", 0, 1, None), ("outer", 1, 1, None)],
            _force_sync,
        )
    )
    specs.append(
        Spec(
            "lookahead",
            optax.lookahead(optax.adam(LR), sync_period=6, slow_step_size=0.5),
            6,
            optax.LookaheadParams.init_synced,
            [("fast", 0, 5, None), ("sync", 5, 1, None)],
            _force_sync,
        )
    )
    if names:
        unknown = set(names) - {s.name for s in specs}
        if unknown:
            raise ValueError(f"unknown methods {sorted(unknown)}; valid: {[s.name for s in specs]}")
        specs = [s for s in specs if s.name in names]
    return specs


def init_stored_state(spec: Spec, params: Any) -> tuple[Any, Any]:
    stored = C.fresh_copy(spec.stored_fn(params))
    state = C.fresh_copy(spec.tx.init(stored))
    return stored, state


def make_runner(
    spec: Spec, params, grads, *, donate: bool, force: int | None = None, compiled=None
):
    """A Timed runner doing k calls of the jitted step (counter forced before each call).

    ``compiled``: the step already compiled for these shapes (saves a compilation).
    """
    jitted = compiled or C.jit_step(C.make_step(spec.tx), donate=donate)
    holder = list(init_stored_state(spec, params))

    def run(k: int) -> None:
        stored, state = holder
        for _ in range(k):
            if force is not None:
                state = spec.force(state, jnp.asarray(force, jnp.int32))
            stored, state = jitted(stored, state, grads)
        jax.block_until_ready((stored, state))
        holder[:] = [stored, state]

    return run


# ----------------------------------------------------------------------------
# Deterministic analysis of the compiled programs.


def compile_step(spec: Spec, params, grads, *, donate: bool = True):
    """Compiles the jitted step for abstract inputs shaped like ``params``."""
    stored, state = jax.eval_shape(lambda p: init_stored_state(spec, p), params)
    return C.compile_step(C.make_step(spec.tx), stored, state, grads, donate=donate)


def phase_analysis(spec: Spec, params, grads, compiled=None) -> dict[str, Any]:
    """Load-independent figures of the compiled (donated) step, whole and per phase.

    * ``generic``: XLA's ``bytes accessed`` per parameter (XLA adds up all
      branches of a conditional, so for PROFIT this counts work that no single
      call does), parameter-sized ``copy`` ops anywhere in the program, the
      conditionals and their kinds, the memory analysis.
    * ``phases``: the ops one call of each phase executes in that same program
      (the entry computation plus, at each conditional, the branch the phase
      takes: see :data:`_FIRST`, :data:`_MIDDLE`, :data:`_MAIN`), with their
      parameter-sized reads and writes in passes over the parameter tree, bytes
      per parameter, copies, and a histogram of op signatures ("fusion:3R1W" = a
      fusion reading three and writing one array of its leaf's size).
    * ``cycle``: per-call averages over a full cycle, weighted by calls per phase.

    "Parameter-sized" = at least as many elements as the smallest 2-D leaf; the
    1-D leaves (biases, LayerNorm) are below it and not counted (they are <1% of
    the parameters at 1e6+).
    """
    n = C.tree_size(params)
    min_el = C.min_large_elems(params)
    unit = C.large_elems(params, min_el)
    n_large_leaves = sum(1 for x in jax.tree.leaves(params) if x.size >= min_el)
    compiled = compiled or compile_step(spec, params, grads)
    text = compiled.as_text()
    n_copy, copy_bytes = hlo.large_copies(text, min_el)
    comps = hlo.parse_hlo(text)
    conds = [
        (c.name, op.name, hlo.conditional_kind(op, n_large_leaves, min_el))
        for c in comps.values()
        for op in c.ops
        if op.opcode == "conditional"
    ]
    out: dict[str, Any] = {
        "n_params": n,
        "large_params": unit,
        "generic": {
            "bytes_accessed_per_param": (hlo.cost_bytes_accessed(compiled) or math.nan) / n,
            "param_sized_copies": n_copy,
            "copy_bytes_per_param": copy_bytes / n,
            "conditionals": conds,
            "memory_analysis": hlo.memory_analysis(compiled),
        },
        "phases": {},
    }
    total_w = sum(w for _, _, w, _ in spec.phases)
    cyc = {"read_passes": 0.0, "write_passes": 0.0, "bytes_per_param": 0.0}
    for label, _k, w, policy in spec.phases:
        choose = None
        if policy is not None:
            choose = lambda op, pol=policy: pol[hlo.conditional_kind(op, n_large_leaves, min_el)]
        rows = hlo.executed_passes(text, min_el, choose)
        summ = hlo.summarize_passes(rows, unit)
        summ["param_sized_copies"] = sum(1 for r in rows if r.opcode == "copy")
        out["phases"][label] = {"calls_per_cycle": w, **summ}
        for key in cyc:
            cyc[key] += w * summ[key] / total_w
    out["cycle"] = cyc
    return out


# ----------------------------------------------------------------------------
# Driver.


def run(
    sizes: list[float],
    dtypes: list[str],
    *,
    rounds: int,
    calls_per_block: int,
    donate_modes: tuple[bool, ...],
    methods: list[str] | None,
    phase_timing: bool,
    analysis: bool,
    time_budget_s: float | None,
    depth: int = 4,
    log=print,
) -> dict[str, Any]:
    specs = method_specs(methods)
    results: dict[str, Any] = {"env": C.env_info(), "configs": []}
    for dtype_name in dtypes:
        dtype = jnp.dtype(dtype_name)
        for size in sizes:
            params = C.transformer_like_params(size, dtype, depth=depth)
            n = C.tree_size(params)
            grads = jax.tree.map(
                lambda p: (1e-3 * jnp.cos(p.astype(jnp.float32) * 50.0 + 1.0)).astype(p.dtype),
                params,
            )
            cfg: dict[str, Any] = {
                "dtype": dtype_name,
                "target_size": size,
                "n_params": n,
                "leaves": len(jax.tree.leaves(params)),
                "load_before": C.load_average(),
            }
            compiled = {s.name: compile_step(s, params, grads) for s in specs}  # donated
            if analysis:
                cfg["analysis"] = {
                    s.name: phase_analysis(s, params, grads, compiled[s.name]) for s in specs
                }
            for donate in donate_modes:
                if not donate:
                    compiled = {s.name: compile_step(s, params, grads, donate=False) for s in specs}
                items = [
                    C.Timed(
                        s.name,
                        make_runner(
                            s,
                            params,
                            grads,
                            donate=donate,
                            compiled=compiled[s.name],
                        ),
                    )
                    for s in specs
                ]
                if phase_timing:
                    for s in specs:
                        if s.name in ("profit_sgd_n1", "profit_auto_n1"):
                            for label, k, _, _ in s.phases:
                                run_k = make_runner(
                                    s,
                                    params,
                                    grads,
                                    donate=donate,
                                    force=k,
                                    compiled=compiled[s.name],
                                )
                                items.append(C.Timed(f"{s.name}@{label.split()[0]}", run_k))
                timing = C.interleaved_timing(
                    items,
                    calls_per_block=calls_per_block,
                    rounds=rounds,
                    baseline="adam",
                    time_budget_s=time_budget_s,
                )
                cfg["timing_donated" if donate else "timing_not_donated"] = timing
                del items
                log(
                    f"[update_cost] {dtype_name} n={n:,} donate={donate} "
                    f"rounds={timing['rounds']}: "
                    + ", ".join(
                        f"{k}={v['median_ms']:.2f}ms x{v.get('ratio_median', 1):.2f}"
                        for k, v in timing.items()
                        if isinstance(v, dict)
                    )
                )
            cfg["load_after"] = C.load_average()
            results["configs"].append(cfg)
            del params, grads, compiled
    return results


def markdown(results: dict[str, Any]) -> str:
    lines = []
    for cfg in results["configs"]:
        n = cfg["n_params"]
        la = cfg.get("load_before")
        head = f"### {cfg['dtype']}, {n:,} parameters ({cfg['leaves']} leaves)"
        if la:
            head += f" — load avg before {la[0]:.1f}, after {cfg['load_after'][0]:.1f}"
        lines += [head, ""]
        for key in ("timing_donated", "timing_not_donated"):
            if key not in cfg:
                continue
            t = cfg[key]
            rows = {name: v for name, v in t.items() if isinstance(v, dict)}
            # files from before 2026-12-04 have no fault counts: no column then
            faults = all("faults_per_call" in v for v in rows.values())
            lines += [
                f"{'donated' if key == 'timing_donated' else 'not donated'}: "
                f"{t['rounds']} rounds × {t['calls_per_block']} calls per method",
                "",
                "| method | median ms/call | min–max ms | ratio to Adam (median) | ratio range |"
                + (" minor page faults/call (median) |" if faults else ""),
                "|---|---|---|---|---|" + ("---|" if faults else ""),
            ]
            for name, v in rows.items():
                lines.append(
                    f"| {name} | {v['median_ms']:.3f} | {v['min_ms']:.3f}–{v['max_ms']:.3f} "
                    f"| {v['ratio_median']:.3f} | {v['ratio_min']:.3f}–{v['ratio_max']:.3f} |"
                    + (f" {v['faults_per_call']:,.0f} |" if faults else "")
                )
            lines.append("")
        if "analysis" in cfg:
            lines += [
                "Compiled donated program (deterministic): parameter-sized reads + writes"
                " per call in passes over the parameters, per phase and averaged over a cycle.",
                "",
                "| method | XLA bytes accessed/param (all branches) | param-sized copies "
                "| cycle avg: bytes/param | cycle avg: reads + writes (passes) "
                "| per phase: reads + writes (copies executed) |",
                "|---|---|---|---|---|---|",
            ]
            for name, a in cfg["analysis"].items():
                g, cyc = a["generic"], a["cycle"]
                per_phase = "; ".join(
                    f"{lab}: {p['read_passes']:.2f} + {p['write_passes']:.2f}"
                    f" ({p['param_sized_copies']})"
                    for lab, p in a["phases"].items()
                )
                lines.append(
                    f"| {name} | {g['bytes_accessed_per_param']:.1f} | {g['param_sized_copies']} "
                    f"| {cyc['bytes_per_param']:.1f} "
                    f"| {cyc['read_passes']:.2f} + {cyc['write_passes']:.2f} | {per_phase} |"
                )
            lines.append("")
    return "\n".join(lines)


#: The README's cost table: (method, column header), Adam being the baseline.
README_COLUMNS = (
    ("profit_sgd_n1", "PROFIT n_ref=1"),
    ("profit_sgd_n2", "n_ref=2"),
    ("profit_sgd_n3", "n_ref=3"),
    ("profit_auto_n1", "PROFIT, automatic reference (n_ref=1)"),
    ("profit_lean", "profit_lean"),
    ("sam", "SAM(Adam)"),
)


def readme_table(results: dict[str, Any]) -> str:
    """The README's cost table from a results file of this benchmark (its largest donated
    configuration): time per call and bytes moved per call, as ratios to Adam, and the
    minor page faults per call where the file has them."""
    cfgs = [c for c in results["configs"] if "timing_donated" in c and "analysis" in c]
    if not cfgs:
        raise ValueError("the results have no donated timing with the compiled-program analysis")
    cfg = max(cfgs, key=lambda c: c["n_params"])
    timing, analysis = cfg["timing_donated"], cfg["analysis"]
    cols = [(name, head) for name, head in README_COLUMNS if name in timing and name in analysis]
    adam_bytes = analysis["adam"]["cycle"]["bytes_per_param"]
    t = {n: timing[n] for n, _ in cols}
    time_cells = [
        f"{t[n]['ratio_median']:.2f} [{t[n]['ratio_min']:.2f}–{t[n]['ratio_max']:.2f}]"
        for n, _ in cols
    ]
    byte_cells = [f"{analysis[n]['cycle']['bytes_per_param'] / adam_bytes:.2f}" for n, _ in cols]
    env = results.get("environment", {})
    before, after = cfg.get("load_before"), cfg.get("load_after")
    load = f"{before[0]:.2f} → {after[0]:.2f}" if before and after else "not recorded"
    lines = [
        "| | " + " | ".join(h for _, h in cols) + " |",
        "|---|" + "---|" * len(cols),
        "| time per call / Adam, median [min–max over rounds] | " + " | ".join(time_cells) + " |",
        "| bytes moved per call / Adam (compiled HLO, cycle average) | "
        + " | ".join(byte_cells)
        + " |",
    ]
    if all("faults_per_call" in timing[n] for n in [*t, "adam"]):
        lines.append(
            f"| minor page faults per call, median (Adam: {timing['adam']['faults_per_call']:,.0f})"
            " | " + " | ".join(f"{t[n]['faults_per_call']:,.0f}" for n, _ in cols) + " |"
        )
    lines += [
        "",
        f"{cfg['dtype']}, {cfg['n_params']:,} parameters, donated, {timing['rounds']} interleaved "
        f"rounds of {timing['calls_per_block']} calls per method; load average (1 min) "
        f"{load}; {env.get('machine', {}).get('devices', 'unknown device')}, "
        f"{env.get('machine', {}).get('cpus', '?')} cores; {env.get('date', '')[:10]}; "
        f"commit {env.get('git_commit', '?')[:12]}; `{env.get('command', '')}`.",
    ]
    return "\n".join(lines)


def pass_table(
    results: dict[str, Any],
    methods=("adam", "profit_sgd_n1", "profit_auto_n1", "profit_lean", "sam", "lookahead"),
) -> str:
    """Per-phase op signatures of the largest analysed configuration."""
    cfgs = [c for c in results["configs"] if "analysis" in c]
    if not cfgs:
        return ""
    cfg = max(cfgs, key=lambda c: c["n_params"])
    lines = [f"Op signatures per phase ({cfg['dtype']}, {cfg['n_params']:,} parameters):", ""]
    for name in methods:
        if name not in cfg["analysis"]:
            continue
        for label, p in cfg["analysis"][name]["phases"].items():
            lines.append(
                f"- **{name} / {label}**: {p['read_passes']:.2f} reads + "
                f"{p['write_passes']:.2f} writes, {p['n_ops']} ops: "
                + ", ".join(f"{k} ×{v}" for k, v in p["op_signatures"].items())
            )
    return "\n".join(lines) + "\n"


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[1e5, 1e6, 1e7, 3e7])
    ap.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--calls-per-block", type=int, default=12, help="a multiple of 12")
    ap.add_argument("--no-donate", action="store_true", help="also time without donation")
    ap.add_argument("--methods", nargs="*", default=None)
    ap.add_argument("--depth", type=int, default=4, help="transformer blocks in the tree")
    ap.add_argument("--no-phase-timing", action="store_true")
    ap.add_argument("--no-analysis", action="store_true")
    ap.add_argument(
        "--no-timing", action="store_true", help="only the compiled programs' analysis (no timing)"
    )
    ap.add_argument("--time-budget-s", type=float, default=None, help="per configuration")
    ap.add_argument("--json", default=None, help="write the raw results here")
    ap.add_argument("--quick", action="store_true", help="tiny tree, Adam and PROFIT: a smoke run")
    args = ap.parse_args(argv)
    if args.quick:
        args.sizes, args.dtypes, args.rounds, args.depth = [2e4], ["float32"], 1, 1
        args.calls_per_block, args.methods = 2, args.methods or ["adam", "profit_sgd_n1"]
        args.no_phase_timing = True
    return args


def report_markdown(res: dict[str, Any]) -> str:
    """The benchmark's tables and, for its largest analysed configuration, the op signatures."""
    return markdown(res) + "\n" + pass_table(res)


def main(argv=None) -> dict[str, Any]:
    args = parse_args(argv)
    res = run(
        args.sizes,
        args.dtypes,
        rounds=args.rounds,
        calls_per_block=args.calls_per_block,
        donate_modes=() if args.no_timing else (True, False) if args.no_donate else (True,),
        methods=args.methods,
        phase_timing=not args.no_phase_timing,
        analysis=not args.no_analysis,
        time_budget_s=args.time_budget_s,
        depth=args.depth,
    )
    return C.report(res, report_markdown, args.json, name="update_cost", argv=argv)


if __name__ == "__main__":
    main()
