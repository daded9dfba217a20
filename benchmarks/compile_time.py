"""Compile time of the jitted PROFIT training step vs ``n_ref``, alternating and one-call modes.

For each ``n_ref`` in ``--n-refs``: the alternating-mode step (one gradient,
``tx.update``, ``apply_updates``) and the one-call step
(``profit(..., one_call=True)`` with ``grad_fn``: the whole cycle, ``n_ref + 1``
gradients, in one call; the reference steps are unrolled at trace time, so its
program grows with ``n_ref``: one more gradient per reference step). Times ``jit(...).lower()`` and
``.compile()`` separately, each on a fresh function (no cache hits), median of
``--repeats``; also the compiled HLO's size (characters). Adam's step is the
reference point.

    PYTHONPATH=. python -m benchmarks.compile_time --n-refs 1 3 8
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import jax
import jax.numpy as jnp
import optax

import profit_optax
from benchmarks import _common as C
from benchmarks.models import WORKLOADS, make_workload

LR = 1e-4


def _steps(loss_fn, n_ref: int | None, one_call: bool):
    """(step function, optimizer). ``n_ref=None``: plain Adam."""
    if n_ref is None:
        tx = optax.adam(LR)
    else:
        tx = profit_optax.profit(
            optax.adam(LR), optax.sgd(LR / 100), n_ref=n_ref, one_call=one_call
        )
    return C.make_step(tx, loss_fn, one_call=one_call, return_loss=False), tx


def time_compile(w, n_ref: int | None, one_call: bool, repeats: int) -> dict[str, Any]:
    lowers, compiles = [], []
    hlo_chars = None
    for _ in range(repeats):
        step, tx = _steps(w.loss_fn, n_ref, one_call)  # a fresh function: no cache hits
        params = w.params
        state = jax.eval_shape(tx.init, params)
        batch = w.batch
        if one_call:
            batch = jax.tree.map(lambda b: jnp.stack([b] * (n_ref + 1)), w.batch)
        args = C.abstract((params, state, batch))
        t0 = time.perf_counter()
        lowered = C.jit_step(step).lower(*args)
        t1 = time.perf_counter()
        compiled = lowered.compile()
        t2 = time.perf_counter()
        lowers.append(t1 - t0)
        compiles.append(t2 - t1)
        hlo_chars = len(compiled.as_text())
    return {
        "lower_s": statistics.median(lowers),
        "compile_s": statistics.median(compiles),
        "lower_all_s": lowers,
        "compile_all_s": compiles,
        "compiled_hlo_chars": hlo_chars,
    }


def run(workloads: list[str], n_refs: list[int], repeats: int, log=print) -> dict[str, Any]:
    res: dict[str, Any] = {"env": C.env_info(), "workloads": []}
    for wname in workloads:
        w = make_workload(wname)
        rows = [{"mode": "adam", "n_ref": None, **time_compile(w, None, False, repeats)}]
        for mode in ("alternating", "one_call"):
            for n in n_refs:
                rows.append(
                    {"mode": mode, "n_ref": n, **time_compile(w, n, mode == "one_call", repeats)}
                )
                log(f"[compile_time] {wname} {mode} n_ref={n}: {rows[-1]['compile_s']:.2f}s")
        res["workloads"].append(
            {
                "name": wname,
                "description": w.description,
                "n_params": C.tree_size(w.params),
                "rows": rows,
                "load": C.load_average(),
            }
        )
    return res


def markdown(res: dict[str, Any]) -> str:
    lines = []
    for e in res["workloads"]:
        lines += [
            f"### {e['description']} — {e['n_params']:,} parameters",
            "",
            "| step | n_ref | lower s (median) | compile s (median) | compile s, all repeats "
            "| compiled HLO (chars) |",
            "|---|---|---|---|---|---|",
        ]
        for r in e["rows"]:
            lines.append(
                f"| {r['mode']} | {r['n_ref'] if r['n_ref'] is not None else '–'} "
                f"| {r['lower_s']:.2f} | {r['compile_s']:.2f} "
                f"| {', '.join(f'{x:.2f}' for x in r['compile_all_s'])} "
                f"| {r['compiled_hlo_chars']:,} |"
            )
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workloads", nargs="+", default=["mlp_fmnist", "vit_mini_fmnist"],
                    choices=list(WORKLOADS))  # fmt: skip
    ap.add_argument("--n-refs", type=int, nargs="+", default=[1, 3, 8])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--quick", action="store_true", help="the MLP, n_ref 1, 1 repeat")
    args = ap.parse_args(argv)
    if args.quick:
        args.workloads, args.n_refs, args.repeats = ["mlp_fmnist"], [1], 1
    res = run(args.workloads, args.n_refs, args.repeats)
    return C.report(res, markdown, args.json, name="compile_time", argv=argv)


if __name__ == "__main__":
    main()
