"""Large ViTs with bf16 parameters: step time, optimizer state and memory of PROFIT vs Adam/AdamW.

For each model (ViT-B/16 ≈ 86M parameters, ViT-L/16 ≈ 304M parameters, at 224×224)
and each method (``optax.adam``, ``optax.adamw``,
``profit_optax.profit(optax.adam(lr), optax.sgd(lr / 100))`` in alternating mode, and
the memory-lean ``profit_optax.profit_lean(optax.adam(lr))``),
one full training step (``_common.make_step``) is jitted: forward, backward,
optimizer update and ``optax.apply_updates``, with the parameters and the
optimizer state donated.
Parameters, images and compute are bfloat16 (the loss is taken in float32);
each optimizer keeps its state in the parameters' dtype (optax's default),
PROFIT accumulates its reductions in float32 itself.

Reported per model and method:

* parameter count and bytes, optimizer-state bytes (from the state pytree);
* the compiled step's ``memory_analysis()``: argument, output, alias and temp
  sizes, and the peak estimate ``argument + output − alias + temp``;
* the measured peak resident memory (``VmHWM``) of a process that runs only
  this configuration: before the steps (compilation and initialisation), and
  during the steps alone (after initialisation the heap's free pages are handed
  back with glibc's ``malloc_trim``, since compiling leaves freed memory resident,
  and the high-water mark is reset through ``/proc/self/clear_refs``;
  ``getrusage``'s ``ru_maxrss`` reads the same reset mark on Linux, it is kept in
  the JSON as a cross-check); the resident memory just before the steps (the
  parameters, the state, the runtime and the compiled executable) is its own column;
* the wall-clock time per gradient evaluation: every method is timed in blocks
  of two consecutive calls (one PROFIT cycle = one reference + one main call) by
  ``_common.interleaved_timing``, divided by 2; median over blocks.
  Configurations run round-robin, one process each (``_common.run_subprocess``),
  and the 1-minute load average is recorded with every block.

``fit`` finds the largest model of a family (fixed width, heads and MLP size;
the depth varies) whose compiled peak estimate fits a memory budget, per
method, from compiles alone (nothing is executed): it compiles the step at two
depths, fits the estimate as affine in the depth, and solves for the budget.

    PYTHONPATH=. python -m benchmarks.large_models run --models B/16,L/16 --batch 2 \\
        --rounds 2 --json large.json
    PYTHONPATH=. python -m benchmarks.large_models fit --families L,G --depths 1,4 \\
        --budget-gib 22 --batch 2
    PYTHONPATH=. python -m benchmarks.large_models one --model B/16 --method profit  # one
    PYTHONPATH=. python -m benchmarks.large_models table large.json  # tables of a file

Models are the named sizes of ``experiments/vit/model.py`` (``B/16``, ``L/16``)
or ``w<width>-d<depth>-h<heads>-m<mlp>/<patch>`` (e.g. ``w1664-d48-h16-m8192/16``).
``--cache-dir DIR`` turns on the XLA persistent compilation cache, so that each
configuration is compiled once across processes; it is off by default, since with it
the compile times and the compile+init peak RSS of every process after the first are
cache reads (committed results come from runs without it: the tests check).
The same commands run on a GPU unchanged (``JAX_PLATFORMS=cuda``); there the
peak-RSS columns measure host memory only and the compiled estimate is the
device's.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import re
import resource
import statistics
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import profit_optax
from benchmarks import _common as C
from benchmarks import hlo

METHODS = ("adam", "adamw", "profit", "profit_lean")
#: Width, heads and MLP size of the depth-scan families (ViT-B, -L, -H and ViT-G/14 shapes;
#: ``T``, a tiny one, for ``--quick``).
FAMILIES = {
    "B": (768, 12, 3072),
    "L": (1024, 16, 4096),
    "H": (1280, 16, 5120),
    "G": (1664, 16, 8192),
    "T": (16, 2, 32),
}
LEARNING_RATE = 1e-4
NUM_CLASSES = 1000
GIB = 2**30


# ----------------------------------------------------------------------------
# Models, methods, the step.


def make_model(spec: str):
    """A ViT from a named size (``"B/16"``) or ``"w<W>-d<D>-h<H>-m<M>/<patch>"``."""
    from experiments.vit.model import VARIANTS, ViT, vit

    name, _, patch = spec.partition("/")
    if name in VARIANTS:
        return vit(spec, NUM_CLASSES)
    m = re.fullmatch(r"w(\d+)-d(\d+)-h(\d+)-m(\d+)", name)
    if m is None or not patch:
        raise ValueError(
            f"model {spec!r}: expected one of {sorted(VARIANTS)} with '/<patch>', "
            "or 'w<width>-d<depth>-h<heads>-m<mlp>/<patch>'"
        )
    width, depth, heads, mlp = map(int, m.groups())
    return ViT(
        num_classes=NUM_CLASSES,
        patch_size=int(patch),
        width=width,
        depth=depth,
        num_heads=heads,
        mlp_dim=mlp,
    )


def make_tx(method: str, lr: float = LEARNING_RATE):
    if method == "adam":
        return optax.adam(lr)
    if method == "adamw":
        return optax.adamw(lr)
    if method == "profit":
        return profit_optax.profit(optax.adam(lr), optax.sgd(lr / 100))
    if method == "profit_lean":
        return profit_optax.profit_lean(optax.adam(lr))
    raise ValueError(f"unknown method {method!r}; choose from {METHODS}")


def abstract_params(model, image: int):
    """Parameter shapes in bfloat16, without allocating anything."""
    shapes = jax.eval_shape(
        lambda: model.init(jax.random.key(0), jnp.zeros((1, image, image, 3), jnp.float32))
    )["params"]
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, jnp.bfloat16), shapes)


def concrete_params(abstract, seed: int = 0):
    """Host-side initialisation (no compile): LayerNorm scales 1, biases 0, else N(0, 0.02²)."""
    rng = np.random.default_rng(seed)

    def leaf(path, x):
        name = getattr(path[-1], "key", "")
        if name == "scale":
            v = np.ones(x.shape, np.float32)
        elif name == "bias":
            v = np.zeros(x.shape, np.float32)
        else:
            v = rng.standard_normal(x.shape, np.float32) * 0.02
        return jnp.asarray(v, dtype=x.dtype)

    return jax.tree_util.tree_map_with_path(leaf, abstract)


def loss_fn(model):
    """``(params, (images, labels)) -> loss``: softmax cross-entropy, taken in float32."""

    def loss(params, batch):
        images, labels = batch
        logits = model.apply({"params": params}, images).astype(jnp.float32)
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    return loss


def compile_step(spec: str, method: str, batch: int, image: int):
    """Lowers and compiles the step on abstract inputs. Returns (compiled, info)."""
    model = make_model(spec)
    tx = make_tx(method)
    params = abstract_params(model, image)
    state = jax.eval_shape(tx.init, params)
    images = jax.ShapeDtypeStruct((batch, image, image, 3), jnp.bfloat16)
    labels = jax.ShapeDtypeStruct((batch,), jnp.int32)
    t0 = time.perf_counter()
    compiled = C.compile_step(C.make_step(tx, loss_fn(model)), params, state, (images, labels))
    compile_s = time.perf_counter() - t0
    info = {
        "model": spec,
        "method": method,
        "batch": batch,
        "image": image,
        "width": model.width,
        "depth": model.depth,
        "num_heads": model.num_heads,
        "mlp_dim": model.mlp_dim,
        "param_count": C.tree_size(params),
        "param_bytes": C.tree_bytes(params),
        "state_bytes": C.tree_bytes(state),
        "compile_s": compile_s,
        **memory_stats(compiled),
    }
    return (tx, params, compiled), info


def memory_stats(compiled) -> dict[str, int | None]:
    """``memory_analysis()`` in bytes, and the peak estimate argument + output − alias + temp."""
    ma = hlo.memory_analysis(compiled)
    if ma is None:
        return {"estimate_bytes": None}
    out = {k: ma[f"{k}_size_in_bytes"] for k in ("argument", "output", "alias", "temp")}
    out["generated_code"] = ma.get("generated_code_size_in_bytes")
    out["estimate_bytes"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
    return out


# ----------------------------------------------------------------------------
# One configuration, alone in its process.


def _proc_status_kib(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _release_free_heap() -> bool:
    """glibc's ``malloc_trim(0)``: hands the heap's free pages back to the kernel.

    Compiling leaves freed host memory in the heap (on ViT-L/16 1.3 GiB for
    ``profit_lean``, 0.3 for Adam: ``benchmarks/analysis/lean_memory.md``), which would
    otherwise stay resident and count in the steps' peak. False where the C library has
    no ``malloc_trim``.
    """
    try:
        libc = ctypes.CDLL(None)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return False
    trim.argtypes = [ctypes.c_size_t]
    trim(0)
    return True


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def measure_one(
    spec: str, method: str, *, batch: int, image: int = 224, steps: int = 4, warmup: int = 2
) -> dict[str, Any]:
    """Compiles, initialises and runs ``warmup + steps`` calls of one configuration.

    ``warmup`` and ``steps`` must be even: the calls are timed in blocks of two
    (one PROFIT cycle) by :func:`benchmarks._common.interleaved_timing`.
    """
    if warmup % 2 or steps % 2 or steps < 2:
        raise ValueError("warmup and steps must be even (whole PROFIT cycles), steps >= 2")
    rss0 = _proc_status_kib("VmRSS")
    (tx, aparams, compiled), info = compile_step(spec, method, batch, image)
    rss_compiled = _proc_status_kib("VmRSS")
    params = concrete_params(aparams)
    state = jax.jit(tx.init)(params)
    rng = np.random.default_rng(1)
    images = jnp.asarray(rng.standard_normal((batch, image, image, 3), np.float32), jnp.bfloat16)
    labels = jnp.asarray(rng.integers(0, NUM_CLASSES, (batch,)), jnp.int32)
    jax.block_until_ready((params, state))
    rss_init = _proc_status_kib("VmRSS")
    peak_before_steps = _proc_status_kib("VmHWM")
    trimmed = _release_free_heap()
    rss_trimmed = _proc_status_kib("VmRSS")
    reset = _reset_peak_rss()

    holder, losses = [params, state], []

    def run(k: int) -> None:
        params, state = holder
        for _ in range(k):
            params, state, loss = compiled(params, state, (images, labels))
            losses.append(loss)
        jax.block_until_ready((params, state, loss))
        holder[:] = [params, state]

    item = C.Timed(method, run)
    timing = C.interleaved_timing(
        [item], calls_per_block=2, rounds=steps // 2, warmup_blocks=warmup // 2
    )
    losses = [float(x) for x in losses[warmup:]]
    info.update(
        devices=str(jax.devices()[0].device_kind),
        platform=jax.devices()[0].platform,
        rss_start_kib=rss0,
        rss_after_compile_kib=rss_compiled,
        rss_after_init_kib=rss_init,
        malloc_trim=trimmed,
        rss_after_trim_kib=rss_trimmed,
        peak_rss_before_steps_kib=peak_before_steps,
        step_peak_rss_kib=_proc_status_kib("VmHWM") if reset else None,
        ru_maxrss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        pair_times_per_grad_s=item.times,
        load1=timing["load1"],
        losses=losses,
        finite=bool(np.all(np.isfinite(losses))),
    )
    return info


# ----------------------------------------------------------------------------
# Round-robin over configurations, one process each.


def run_all(
    models: list[str],
    methods: list[str],
    *,
    batch: int,
    image: int,
    rounds: int,
    steps: int,
    warmup: int,
    cache_dir: str | None,
    log=print,
) -> list[dict[str, Any]]:
    results = []
    for spec in models:
        for r in range(rounds):
            order = methods[r % len(methods) :] + methods[: r % len(methods)]
            for method in order:
                args = [
                    "one",
                    f"--model={spec}",
                    f"--method={method}",
                    f"--batch={batch}",
                    f"--image={image}",
                    f"--steps={steps}",
                    f"--warmup={warmup}",
                ]
                if cache_dir:
                    args.append(f"--cache-dir={cache_dir}")
                t0 = time.perf_counter()
                res = json.loads(C.run_subprocess("large_models", args).strip().splitlines()[-1])
                wall = time.perf_counter() - t0
                res.update(round=r, process_wall_s=wall)
                results.append(res)
                log(
                    f"{spec} {method} round {r}: per-grad "
                    f"{[round(t, 2) for t in res['pair_times_per_grad_s']]} s, "
                    f"load {[round(x or 0, 1) for x in res['load1']]}, "
                    f"compile {res['compile_s']:.0f} s, step peak RSS "
                    f"{(res['step_peak_rss_kib'] or 0) / 2**20:.2f} GiB, process {wall:.0f} s"
                )
    return results


def summarize(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows: dict[tuple[str, str], dict[str, Any]] = {}
    for res in results:
        key = (res["model"], res["method"])
        row = rows.setdefault(
            key,
            {
                k: res[k]
                for k in (
                    "model",
                    "method",
                    "batch",
                    "param_count",
                    "param_bytes",
                    "state_bytes",
                    "argument",
                    "output",
                    "alias",
                    "temp",
                    "estimate_bytes",
                )
            }
            | {
                "per_grad": [],
                "load1": [],
                "step_peak_rss_kib": [],
                "pre_peak_kib": [],
                "trimmed_kib": [],
            },
        )
        row["per_grad"] += res["pair_times_per_grad_s"]
        row["load1"] += res["load1"]
        row["step_peak_rss_kib"].append(res["step_peak_rss_kib"])
        row["pre_peak_kib"].append(res.get("peak_rss_before_steps_kib"))
        row["trimmed_kib"].append(res.get("rss_after_trim_kib"))
    out = []
    for row in rows.values():
        row["median_per_grad_s"] = statistics.median(row["per_grad"])
        row["min_per_grad_s"] = min(row["per_grad"])
        loads = [x for x in row["load1"] if x is not None] or [float("nan")]
        row["load1_range"] = (min(loads), max(loads))
        row["step_peak_rss_max_kib"] = max(x or 0 for x in row["step_peak_rss_kib"])
        row["pre_peak_max_kib"] = _max_present(row["pre_peak_kib"])
        row["before_steps_max_kib"] = _max_present(row["trimmed_kib"])
        out.append(row)
    return out


def _max_present(values: list[int | None]) -> int | None:
    """The largest of the values recorded (None where a file predates the field)."""
    present = [x for x in values if x is not None]
    return max(present) if present else None


def _gib_of_kib(kib: int | None) -> str:
    return "—" if kib is None else f"{kib / 2**20:.2f}"


def _gb(b: float) -> str:
    return f"{b / GIB:.2f}"


def markdown_run(rows: list[dict[str, Any]]) -> str:
    lines = [
        "| model | method | params | param GiB | opt-state GiB | arg GiB | out GiB | alias GiB "
        "| temp GiB | est. peak GiB | RSS before steps GiB | step peak RSS GiB "
        "| compile+init peak RSS GiB "
        "| s / grad (median) "
        "| s / grad (min) | n | load1 |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['method']} | {r['param_count']:,} | {_gb(r['param_bytes'])} "
            f"| {_gb(r['state_bytes'])} | {_gb(r['argument'])} | {_gb(r['output'])} "
            f"| {_gb(r['alias'])} | {_gb(r['temp'])} | {_gb(r['estimate_bytes'])} "
            f"| {_gib_of_kib(r.get('before_steps_max_kib'))} "
            f"| {r['step_peak_rss_max_kib'] / 2**20:.2f} | {_gib_of_kib(r['pre_peak_max_kib'])} "
            f"| {r['median_per_grad_s']:.2f} | {r['min_per_grad_s']:.2f} | {len(r['per_grad'])} "
            f"| {r['load1_range'][0]:.1f}–{r['load1_range'][1]:.1f} |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------
# Largest model that fits: compile-only depth scan.


def fit_family(
    family: str,
    methods: list[str],
    *,
    batch: int,
    image: int,
    patch: int,
    depths: tuple[int, int],
    budget_bytes: float,
    log=print,
) -> list[dict[str, Any]]:
    """Per method: the largest depth whose compiled peak estimate fits ``budget_bytes``."""
    width, heads, mlp = FAMILIES[family]
    out = []
    for method in methods:
        pts = []
        for d in depths:
            spec = f"w{width}-d{d}-h{heads}-m{mlp}/{patch}"
            _, info = compile_step(spec, method, batch, image)
            pts.append(info)
            log(
                f"{family} {method} depth {d}: estimate {_gb(info['estimate_bytes'])} GiB "
                f"(compile {info['compile_s']:.0f} s)"
            )
        (d0, e0), (d1, e1) = ((p["depth"], p["estimate_bytes"]) for p in pts)
        (c0, c1) = (pts[0]["param_count"], pts[1]["param_count"])
        slope = (e1 - e0) / (d1 - d0)
        intercept = e0 - slope * d0
        max_depth = int((budget_bytes - intercept) // slope)
        per_block = (c1 - c0) // (d1 - d0)
        out.append(
            {
                "family": family,
                "method": method,
                "width": width,
                "num_heads": heads,
                "mlp_dim": mlp,
                "patch": patch,
                "batch": batch,
                "points": [{k: p[k] for k in ("depth", "estimate_bytes", "temp")} for p in pts],
                "bytes_per_block": slope,
                "bytes_at_depth0": intercept,
                "max_depth": max_depth,
                "max_params": c0 + per_block * (max_depth - d0),
                "estimate_at_max": intercept + slope * max_depth,
            }
        )
    return out


def markdown_fit(rows: list[dict[str, Any]], budget_gib: float) -> str:
    lines = [
        f"| family (width, heads, MLP) | method | GiB per block | GiB at depth 0 "
        f"| largest depth ≤ {budget_gib:g} GiB | parameters | est. peak GiB |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['family']} ({r['width']}, {r['num_heads']}, {r['mlp_dim']}) | {r['method']} "
            f"| {r['bytes_per_block'] / GIB:.4f} | {r['bytes_at_depth0'] / GIB:.3f} "
            f"| {r['max_depth']} | {r['max_params'] / 1e9:.2f} B "
            f"| {r['estimate_at_max'] / GIB:.2f} |"
        )
    return "\n".join(lines)


# ----------------------------------------------------------------------------
# CLI.


def _setup_cache(cache_dir: str | None) -> None:
    if not cache_dir:
        return
    jax.config.update("jax_compilation_cache_dir", cache_dir)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def markdown(payload: dict[str, Any]) -> str:
    """The table of a ``run`` or a ``fit`` results file."""
    if "fit" in payload:
        return markdown_fit(payload["fit"], payload["budget_gib"])
    return markdown_run(payload["summary"])


#: ``--quick``: a ViT of width 16 and one block on 8×8 images (a smoke run).
QUICK_MODEL, QUICK_FAMILY = "w16-d1-h2-m32/8", "T"


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--batch", type=int, default=2)
    common.add_argument("--image", type=int, default=224)
    common.add_argument("--methods", default=",".join(METHODS))
    common.add_argument(
        "--cache-dir", default="", help="persistent compilation cache (off by default)"
    )
    common.add_argument("--json", help="write the results here")
    common.add_argument("--quick", action="store_true", help="a tiny ViT on 8×8 images")

    one = sub.add_parser("one", parents=[common], help="one configuration; prints a JSON line")
    one.add_argument("--model", required=True)
    one.add_argument("--method", required=True, choices=METHODS)
    one.add_argument("--steps", type=int, default=4)
    one.add_argument("--warmup", type=int, default=2)

    run = sub.add_parser("run", parents=[common], help="every model × method, round-robin")
    run.add_argument("--models", default="B/16,L/16")
    run.add_argument("--rounds", type=int, default=2)
    run.add_argument("--steps", type=int, default=4)
    run.add_argument("--warmup", type=int, default=2)

    fit = sub.add_parser("fit", parents=[common], help="largest depth within a memory budget")
    fit.add_argument("--families", default="L,G")
    fit.add_argument("--patch", type=int, default=16)
    fit.add_argument("--depths", default="2,8", help="two depths to compile")
    fit.add_argument("--budget-gib", type=float, default=22.0)

    table = sub.add_parser("table", help="Markdown tables of saved --json results")
    table.add_argument("files", nargs="+")

    a = p.parse_args(argv)
    if a.cmd == "table":
        for path in a.files:
            with open(path) as f:
                print(markdown(json.load(f)))
        return None
    if a.quick:
        a.batch, a.image = 2, 8
        if a.cmd == "run":
            a.models, a.rounds, a.steps, a.warmup = QUICK_MODEL, 1, 2, 0
        if a.cmd == "fit":
            a.families, a.patch, a.depths = QUICK_FAMILY, 8, "1,2"
    _setup_cache(a.cache_dir)
    methods = a.methods.split(",")
    log = lambda s: print(s, file=sys.stderr, flush=True)

    if a.cmd == "one":
        res = measure_one(
            a.model, a.method, batch=a.batch, image=a.image, steps=a.steps, warmup=a.warmup
        )
        print(json.dumps(res), flush=True)
        return res

    payload: dict[str, Any] = {"env": C.env_info()}
    if a.cmd == "run":
        payload["results"] = run_all(
            a.models.split(","),
            methods,
            batch=a.batch,
            image=a.image,
            rounds=a.rounds,
            steps=a.steps,
            warmup=a.warmup,
            cache_dir=a.cache_dir,
            log=log,
        )
        payload["summary"] = summarize(payload["results"])
    else:
        d0, d1 = (int(x) for x in a.depths.split(","))
        payload["budget_gib"] = a.budget_gib
        payload["fit"] = [
            row
            for fam in a.families.split(",")
            for row in fit_family(
                fam,
                methods,
                batch=a.batch,
                image=a.image,
                patch=a.patch,
                depths=(d0, d1),
                budget_bytes=a.budget_gib * GIB,
                log=log,
            )
        ]
    payload["load_at_end"] = C.load_average()
    cli = argv if argv is not None else sys.argv[1:]
    return C.report(payload, markdown, a.json, name="large_models", argv=cli)


if __name__ == "__main__":
    main()
