"""Training-step cost: forward + backward + update of the experiment models, per gradient call.

Every method here evaluates one gradient per call (PROFIT in alternating mode,
SAM in transparent mode), so time per call = time per gradient evaluation.
Calls are timed in blocks of ``lcm(periods)`` calls (full cycles), the methods
interleaved round-robin, ratios to the baseline (Adam, or AdamW where Adam is not
run) taken per round. The methods are ``benchmarks.update_cost``'s and the
language-model suite's pair, AdamW (weight decay 1e-4) and PROFIT(AdamW) with an
SGD reference (λ ratio 10⁴, the paper's DriveLM point) or the automatic one. The step is
``_common.make_step(tx, loss_fn)`` jitted with the parameters and the state
donated, the states copied leaf by leaf after ``init`` (see
``benchmarks/update_cost.py``). Also reports the
compiled step's memory analysis and, where the backend has it, the device's
peak memory (``jax.devices()[0].memory_stats()``; ``None`` on CPU).

    PYTHONPATH=. python -m benchmarks.step_cost --workloads mlp_fmnist vit_mini_fmnist vit_ti_cifar
    PYTHONPATH=. python -m benchmarks.step_cost --workloads lm_full lm_lora \
        --methods adamw profit_adamw_sgd_n1 profit_adamw_auto_n1
"""

from __future__ import annotations

import argparse
import math
from typing import Any

import jax
import optax

import profit_optax
from benchmarks import _common as C
from benchmarks import hlo
from benchmarks import update_cost as U
from benchmarks.models import WORKLOADS, make_workload

DEFAULT_METHODS = ["adam", "profit_sgd_n1", "profit_auto_n1", "sam", "lookahead"]


def _adamw_specs() -> list[U.Spec]:
    """AdamW and PROFIT(AdamW), n_ref 1, as the language-model suite runs them."""
    adamw = lambda: optax.adamw(U.LR, weight_decay=1e-4)
    specs = [U.Spec("adamw", adamw(), 1, lambda p: p, [("all", 0, 1, None)], None)]
    for ref_name, ref in (("sgd", optax.sgd(U.LR / 1e4)), ("auto", None)):
        tx = profit_optax.profit(adamw(), ref, n_ref=1)
        specs.append(U.profit_spec(f"profit_adamw_{ref_name}_n1", tx, 1))
    return specs


def method_specs(names: list[str]) -> list[U.Spec]:
    """``names`` among ``benchmarks.update_cost``'s methods and :func:`_adamw_specs`."""
    specs = U.method_specs() + _adamw_specs()
    unknown = set(names) - {s.name for s in specs}
    if unknown:
        raise ValueError(f"unknown methods {sorted(unknown)}; valid: {[s.name for s in specs]}")
    return [s for s in specs if s.name in names]


def baseline_of(names: list[str]) -> str:
    """The method the ratios are taken to: Adam if it runs, else AdamW, else the first."""
    return next((b for b in ("adam", "adamw") if b in names), names[0])


def run(
    workloads: list[str],
    methods: list[str],
    *,
    rounds: int,
    batch_size: int | None,
    time_budget_s: float | None,
    log=print,
) -> dict[str, Any]:
    specs = method_specs(methods)
    block = math.lcm(*(s.period for s in specs))
    baseline = baseline_of([s.name for s in specs])
    res: dict[str, Any] = {"env": C.env_info(), "workloads": [], "baseline": baseline}
    stats = jax.devices()[0].memory_stats()
    res["device_memory_stats_available"] = stats is not None
    for wname in workloads:
        w = make_workload(wname, batch_size=batch_size)
        n = C.tree_size(w.params)
        entry: dict[str, Any] = {
            "name": wname,
            "description": w.description,
            "n_params": n,
            "load_before": C.load_average(),
            "memory_analysis": {},
        }
        items = []
        for s in specs:
            stored, state = U.init_stored_state(s, w.params)
            compiled = C.compile_step(C.make_step(s.tx, w.loss_fn), stored, state, w.batch)
            entry["memory_analysis"][s.name] = hlo.memory_analysis(compiled)
            holder = [stored, state]

            def run_k(k, jitted=compiled, holder=holder, batch=w.batch):
                stored, state = holder
                for _ in range(k):
                    stored, state, loss = jitted(stored, state, batch)
                jax.block_until_ready((stored, state, loss))
                holder[:] = [stored, state]

            items.append(C.Timed(s.name, run_k))
        timing = C.interleaved_timing(
            items,
            calls_per_block=block,
            rounds=rounds,
            baseline=baseline,
            time_budget_s=time_budget_s,
        )
        entry["timing"] = timing
        entry["load_after"] = C.load_average()
        stats = jax.devices()[0].memory_stats()
        entry["device_memory_stats"] = (
            None if stats is None else {k: v for k, v in stats.items() if "peak" in k}
        )
        log(
            f"[step_cost] {wname} n={n:,} rounds={timing['rounds']}: "
            + ", ".join(
                f"{k}={v['median_ms']:.1f}ms x{v['ratio_median']:.3f}"
                for k, v in timing.items()
                if isinstance(v, dict)
            )
        )
        res["workloads"].append(entry)
        del items
    return res


def markdown(res: dict[str, Any]) -> str:
    base = {"adam": "Adam", "adamw": "AdamW"}.get(res.get("baseline", "adam"), res.get("baseline"))
    lines = []
    for e in res["workloads"]:
        t = e["timing"]
        lines += [
            f"### {e['description']} — {e['n_params']:,} trained parameters",
            f"load avg before {e['load_before'][0]:.1f}, after {e['load_after'][0]:.1f}; "
            f"{t['rounds']} rounds × {t['calls_per_block']} calls (gradient evaluations) per "
            "method",
            "",
            f"| method | median ms per gradient evaluation | min–max ms | ratio to {base} (median) "
            "| ratio range | temp MiB (compiled) | argument MiB |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, v in t.items():
            if not isinstance(v, dict):
                continue
            ma = e["memory_analysis"].get(name) or {}
            lines.append(
                f"| {name} | {v['median_ms']:.2f} | {v['min_ms']:.2f}–{v['max_ms']:.2f} "
                f"| {v['ratio_median']:.3f} | {v['ratio_min']:.3f}–{v['ratio_max']:.3f} "
                f"| {ma.get('temp_size_in_bytes', 0) / 2**20:.1f} "
                f"| {ma.get('argument_size_in_bytes', 0) / 2**20:.1f} |"
            )
        peak = e["device_memory_stats"]
        lines += [
            "",
            "device peak memory: "
            + (
                "not reported by this backend (`memory_stats()` is None)"
                if peak is None
                else str(peak)
            ),
            "",
        ]
    return "\n".join(lines)


def main(argv=None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    ap.add_argument("--methods", nargs="+", default=DEFAULT_METHODS)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=None)
    ap.add_argument("--time-budget-s", type=float, default=None, help="per workload")
    ap.add_argument("--json", default=None)
    ap.add_argument("--quick", action="store_true", help="the MLP, batch 16, 1 round")
    args = ap.parse_args(argv)
    if args.quick:
        args.workloads, args.rounds, args.batch_size = ["mlp_fmnist"], 1, 16
        args.methods = ["adam", "profit_sgd_n1"]
    res = run(
        args.workloads,
        args.methods,
        rounds=args.rounds,
        batch_size=args.batch_size,
        time_budget_s=args.time_budget_s,
    )
    return C.report(res, markdown, args.json, name="step_cost", argv=argv)


if __name__ == "__main__":
    main()
