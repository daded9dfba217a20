"""Memory: optimizer-state bytes per parameter, and the compiled training step's memory.

1. ``experiments.methods.memory_table`` for every registered method on the
   ViT-Ti/4 parameter tree (shapes only, nothing allocated), plus
   ``registry.state_bytes_per_param`` for the PROFIT variants of the update
   benchmark and PROFIT's one-call mode; the "extra copies" column is the
   state beyond Adam's, in parameter-sized fp32 copies.
2. ``compiled.memory_analysis()`` (argument, output, alias, temp bytes) of the
   donated training step of each method, and the device's peak memory where
   the backend reports it (``jax.devices()[0].memory_stats()``; ``None`` on CPU).

    PYTHONPATH=. python -m benchmarks.memory
"""

from __future__ import annotations

import argparse
from typing import Any

import jax
import optax

import profit_optax
from benchmarks import _common as C
from benchmarks import hlo
from benchmarks import update_cost as U
from benchmarks.models import WORKLOADS, make_workload
from experiments import methods as registry
from profit_optax import masks

LR = 1e-4


def state_table(params) -> list[dict[str, Any]]:
    """Optimizer-state bytes per parameter of the update-benchmark methods and one-call PROFIT."""
    txs: dict[str, optax.GradientTransformation] = {s.name: s.tx for s in U.method_specs()}
    txs["profit_sgd_n1_one_call"] = profit_optax.profit(
        optax.adam(LR), optax.sgd(LR / 100), one_call=True
    )
    txs["profit_auto_n1_one_call"] = profit_optax.profit(optax.adam(LR), None, one_call=True)
    adam = registry.state_bytes_per_param(txs["adam"], params)
    rows = []
    for name, tx in txs.items():
        b = registry.state_bytes_per_param(tx, params)
        if name == "lookahead":  # the slow weights live in the stored LookaheadParams
            b_total = b + 4.0
            note = "+ slow weights in LookaheadParams"
        else:
            b_total, note = b, ""
        rows.append(
            {
                "method": name,
                "state_bytes_per_param": b,
                "persistent_bytes_per_param": b_total,
                "extra_fp32_copies_vs_adam": (b_total - adam) / 4.0,
                "note": note,
            }
        )
    return rows


def step_memory(wname: str, methods: list[str]) -> dict[str, Any]:
    w = make_workload(wname)
    out = {}
    for s in U.method_specs(methods):
        stored, state = jax.eval_shape(lambda p, s=s: U.init_stored_state(s, p), w.params)
        compiled = C.compile_step(C.make_step(s.tx, w.loss_fn), stored, state, w.batch)
        out[s.name] = hlo.memory_analysis(compiled)
    return {"name": wname, "description": w.description, "n_params": C.tree_size(w.params),
            "memory_analysis": out}  # fmt: skip


def run(workloads: list[str], methods: list[str], table_model: str) -> dict[str, Any]:
    w = make_workload(table_model, batch_size=1)
    shapes = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), w.params)
    table = registry.memory_table(
        shapes, head_mask=masks.head_mask(shapes), embed_mask=masks.embedding_mask(shapes)
    )
    stats = jax.devices()[0].memory_stats()
    return {
        "env": C.env_info(),
        "table_model": w.description.split(" (")[0],
        "registry_memory_table": table,
        "state_table": state_table(shapes),
        "steps": [step_memory(n, methods) for n in workloads],
        "device_memory_stats": None
        if stats is None
        else {k: v for k, v in stats.items() if "bytes" in k},
    }


def markdown(res: dict[str, Any]) -> str:
    mib = lambda b: f"{b / 2**20:.1f}"
    lines = [
        f"Registry methods on {res['table_model']} (`registry.memory_table`):",
        "",
        res["registry_memory_table"],
        "",
        "Optimizer state of the benchmarked variants (`registry.state_bytes_per_param`; fp32):",
        "",
        "| method | state bytes/param | persistent bytes/param | extra fp32 copies vs Adam |",
        "|---|---|---|---|",
    ]
    for r in res["state_table"]:
        lines.append(
            f"| {r['method']} | {r['state_bytes_per_param']:.3f} "
            f"| {r['persistent_bytes_per_param']:.3f} {r['note']} "
            f"| {r['extra_fp32_copies_vs_adam']:.3f} |"
        )
    lines.append("")
    for st in res["steps"]:
        lines += [
            f"Compiled donated training step, {st['description']} ({st['n_params']:,} "
            "parameters), `compiled.memory_analysis()` in MiB:",
            "",
            "| method | argument | output | alias (donated) | temp |",
            "|---|---|---|---|---|",
        ]
        for name, m in st["memory_analysis"].items():
            lines.append(
                f"| {name} | {mib(m['argument_size_in_bytes'])} | {mib(m['output_size_in_bytes'])} "
                f"| {mib(m['alias_size_in_bytes'])} | {mib(m['temp_size_in_bytes'])} |"
            )
        lines.append("")
    lines.append(
        "Device peak memory: "
        + (
            "not available: this backend's `memory_stats()` returns None."
            if res["device_memory_stats"] is None
            else str(res["device_memory_stats"])
        )
    )
    return "\n".join(lines) + "\n"


def main(argv=None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", nargs="+", default=["vit_ti_cifar"], choices=list(WORKLOADS))
    ap.add_argument("--methods", nargs="+", default=[s.name for s in U.method_specs()])
    ap.add_argument("--table-model", default="vit_ti_cifar", choices=list(WORKLOADS))
    ap.add_argument("--json", default=None)
    ap.add_argument("--quick", action="store_true", help="MLP only, Adam and PROFIT")
    args = ap.parse_args(argv)
    if args.quick:
        args.workloads, args.methods = ["mlp_fmnist"], ["adam", "profit_sgd_n1"]
        args.table_model = "mlp_fmnist"
    res = run(args.workloads, args.methods, args.table_model)
    return C.report(res, markdown, args.json, name="memory", argv=argv)


if __name__ == "__main__":
    main()
