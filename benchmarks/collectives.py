"""What a sharded PROFIT training step communicates, counted from the compiled HLO.

Compiles one full training step (forward, backward, optimizer update) of an MLP
whose parameters are FSDP-sharded over a 1-D mesh of D devices (each
parameter's largest dimension divisible by D is sharded; the batch is split
over all devices; a layer's weights are all-gathered before use), for bare
Adam and for PROFIT configurations wrapping the same Adam, on every mesh axis
type (Explicit and Auto). It then counts the collectives in the optimized HLO
(:mod:`benchmarks.hlo`) and what PROFIT adds over Adam, buffer by buffer.

Collectives inside PROFIT's main-phase ``jax.lax.cond`` run only on main calls
(one call in ``n_ref + 1``); the rest run on every call.

    PYTHONPATH=. python -m benchmarks.collectives --devices 8 --width 512 --depth 4
    PYTHONPATH=. python -m benchmarks.collectives --json out.json     # machine-readable

The step is ``_common.make_step`` with the parameters and the state donated.
Where this process has fewer devices than ``--devices`` (on a CPU: its backend
started with one), the benchmark runs in a child process on simulated CPU
devices (``--xla_force_host_platform_device_count``, through
``_common.run_subprocess``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
from collections import Counter
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

import profit_optax
from benchmarks import _common as C
from benchmarks import hlo

CONFIGS = ("adam", "profit", "profit_nref2", "profit_auto", "profit_per_tensor")


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--devices", type=int, default=8, help="FSDP mesh size")
    p.add_argument("--width", type=int, default=512, help="hidden width of the MLP")
    p.add_argument("--depth", type=int, default=4, help="number of dense layers")
    p.add_argument("--batch-per-device", type=int, default=4)
    p.add_argument("--axis-types", default="Explicit,Auto")
    p.add_argument("--configs", default=",".join(CONFIGS))
    p.add_argument("--json", help="write the results here")
    p.add_argument(
        "--quick", action="store_true", help="width 64, depth 2, Adam and PROFIT, Explicit axes"
    )
    args = p.parse_args(argv)
    if args.quick:
        args.width, args.depth, args.configs, args.axis_types = 64, 2, "adam,profit", "Explicit"
    return args


def build_params(width: int, depth: int, d_in: int, d_out: int):
    sizes = [d_in] + [width] * (depth - 1) + [d_out]
    rng = np.random.default_rng(0)
    return {
        f"dense_{i}": {
            "kernel": (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32),
            "bias": np.zeros((b,), np.float32),
        }
        for i, (a, b) in enumerate(itertools.pairwise(sizes))
    }


def make_tx(name: str):
    adam = optax.adam(1e-3)
    return {
        "adam": lambda: adam,
        "profit": lambda: profit_optax.profit(adam, optax.sgd(1e-5)),
        "profit_nref2": lambda: profit_optax.profit(adam, optax.sgd(1e-5), n_ref=2),
        "profit_auto": lambda: profit_optax.profit(adam, None),
        "profit_per_tensor": lambda: profit_optax.profit(
            adam, optax.sgd(1e-5), projection="per_tensor"
        ),
    }[name]()


N_REF = {"profit": 1, "profit_nref2": 2, "profit_auto": 1, "profit_per_tensor": 1}
PHASES = ("dynamic", "reference", "main")


def compile_step(config: str, axis_type: str, args: argparse.Namespace, phase: str) -> str:
    """HLO text of one compiled FSDP training step.

    ``phase="dynamic"`` is the real step (the phase is read from the state at
    run time). ``"reference"``/``"main"`` fix PROFIT's cycle position to a
    compile-time constant (the first reference call / the main call), so XLA
    folds PROFIT's conditionals and the program is exactly what that call runs.
    """
    d = args.devices
    mesh = jax.make_mesh((d,), ("fsdp",), axis_types=(AxisType[axis_type],))
    params = build_params(args.width, args.depth, d_in=args.width // 4, d_out=16)

    def spec(x):
        dims = sorted(range(x.ndim), key=lambda i: -x.shape[i])
        axis = next((i for i in dims if x.shape[i] % d == 0), None)
        return P(*["fsdp" if i == axis else None for i in range(x.ndim)])

    p_sh = jax.tree.map(lambda x: NamedSharding(mesh, spec(x)), params)
    if axis_type == "Explicit":
        gather = lambda w: jax.sharding.reshard(w, P())
    else:
        gather = lambda w: jax.lax.with_sharding_constraint(w, NamedSharding(mesh, P()))

    def loss_fn(p, batch):
        h = batch["x"]
        for i in range(args.depth):
            layer = p[f"dense_{i}"]
            h = h @ gather(layer["kernel"]) + gather(layer["bias"])
            if i < args.depth - 1:
                h = jax.nn.relu(h)
        return jnp.mean(jnp.square(h - batch["y"]))

    tx = make_tx(config)
    fix_phase = None
    if phase != "dynamic":
        count = np.int32(N_REF[config] if phase == "main" else 0)
        fix_phase = lambda state: state._replace(count=count)  # folded by XLA
    step = C.make_step(tx, loss_fn, prepare_state=fix_phase)

    n = d * args.batch_per_device
    batch = {
        "x": np.zeros((n, args.width // 4), np.float32),
        "y": np.zeros((n, 16), np.float32),
    }
    b_sh = NamedSharding(mesh, P("fsdp"))
    with jax.set_mesh(mesh):
        abstract_p = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), params, p_sh
        )
        s_sh = optax.tree_utils.tree_map_params(
            tx,
            lambda _, s: s,
            jax.eval_shape(tx.init, abstract_p),
            p_sh,
            transform_non_params=lambda _: NamedSharding(mesh, P()),
        )
        abstract_s = jax.tree.map(
            lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
            jax.eval_shape(tx.init, abstract_p),
            s_sh,
        )
        abstract_b = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=b_sh), batch
        )
        return C.compile_step(step, abstract_p, abstract_s, abstract_b).as_text()


def analyse_program(text: str, devices: int, base=None) -> dict[str, Any]:
    """Collectives of one program; with ``base`` (Adam's), what it adds buffer by buffer."""
    colls = hlo.collectives(text, devices)
    res: dict[str, Any] = {
        "summary": hlo.summarize(colls),
        "traffic_bytes": sum(c.traffic_bytes() for c in colls),
        "collectives": [
            {
                "kind": c.kind,
                "conditional": c.conditional,
                "buffers": [[t, list(s)] for t, s in c.buffers],
                "payload_bytes": c.payload_bytes,
                "group_size": c.group_size,
                "op_name": c.op_name,
            }
            for c in colls
        ],
    }
    if base is not None:
        mine, theirs = hlo.buffer_multiset(colls), hlo.buffer_multiset(base)
        res["extra_buffers"] = [[*k, n] for k, n in sorted((mine - theirs).items())]
        res["missing_buffers"] = [[*k, n] for k, n in sorted((theirs - mine).items())]
        res["extra_ops"] = dict(Counter(c.kind for c in colls) - Counter(c.kind for c in base))
    return res


def run(args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for axis_type in args.axis_types.split(","):
        per_config: dict[str, Any] = {}
        base = None
        for config in args.configs.split(","):
            phases = ("dynamic",) if config == "adam" else PHASES
            try:
                texts = {ph: compile_step(config, axis_type, args, ph) for ph in phases}
            except Exception as e:  # reported, not hidden: the test asserts there is none
                per_config[config] = {"error": f"{type(e).__name__}: {str(e).splitlines()[0]}"}
                continue
            if config == "adam":
                base = hlo.collectives(texts["dynamic"], args.devices)
            per_config[config] = {
                ph: analyse_program(t, args.devices, None if config == "adam" else base)
                for ph, t in texts.items()
            }
        results[axis_type] = per_config
    return results


def _fmt_ops(summary: dict) -> str:
    return ", ".join(f"{k} {v['ops']} ({v['buffers']})" for k, v in summary.items()) or "none"


def _fmt_extra(extra: list) -> str:
    merged: Counter = Counter()
    for kind, _, dtype, dims, n in extra:  # whether inside a conditional or not
        merged[(kind, dtype, tuple(dims))] += n
    parts = [f"{n}× {k} {t}[{','.join(map(str, d))}]" for (k, t, d), n in sorted(merged.items())]
    return ", ".join(parts) or "none"


def markdown(payload: dict[str, Any]) -> str:
    lines = [
        f"FSDP over {payload['devices']} devices ({payload['backend']}, jax "
        f"{payload['jax_version']}), MLP of {payload['depth']} dense layers, width "
        f"{payload['width']}: {payload['n_params']:,} parameters in {payload['n_leaves']} "
        f"tensors ({4 * payload['n_params']:,} bytes in float32).",
        "",
        "Cells: collective ops (buffers they carry, after XLA's combiners); bytes = payload "
        "per device; traffic = bytes each device sends under ring algorithms.",
        "",
        "| axis type | optimizer | call | collectives | payload bytes | traffic bytes "
        "| added over Adam |",
        "|---|---|---|---|---|---|---|",
    ]
    for axis_type, per_config in payload["results"].items():
        for config, phases in per_config.items():
            if "error" in phases:
                lines.append(f"| {axis_type} | {config} | — | error: {phases['error'][:160]} |||")
                continue
            for phase, res in phases.items():
                call = "every" if config == "adam" else phase
                total = sum(v["payload_bytes"] for v in res["summary"].values())
                extra = "—" if "extra_buffers" not in res else _fmt_extra(res["extra_buffers"])
                lines.append(
                    f"| {axis_type} | {config} | {call} | {_fmt_ops(res['summary'])} | "
                    f"{total:,} | {res['traffic_bytes']:,.0f} | {extra} |"
                )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = _parse_args(argv)
    argv = list(argv if argv is not None else sys.argv[1:])
    if jax.device_count() < args.devices:
        if f"device_count={args.devices}" in os.environ.get("XLA_FLAGS", ""):
            raise SystemExit(f"need {args.devices} devices, have {jax.devices()}")
        with tempfile.TemporaryDirectory() as tmp:  # a child process with enough devices
            path = args.json or os.path.join(tmp, "collectives.json")
            child = argv if args.json else [*argv, f"--json={path}"]
            sys.stdout.write(C.run_subprocess("collectives", child, devices=args.devices))
            with open(path) as f:
                return json.load(f)
    params = build_params(args.width, args.depth, d_in=args.width // 4, d_out=16)
    payload = {
        "env": C.env_info(),
        "devices": args.devices,
        "width": args.width,
        "depth": args.depth,
        "n_params": int(sum(x.size for layer in params.values() for x in layer.values())),
        "n_leaves": 2 * args.depth,
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "results": run(args),
    }
    return C.report(payload, markdown, args.json, name="collectives", argv=argv)


if __name__ == "__main__":
    main()
