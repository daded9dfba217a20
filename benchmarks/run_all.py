"""Runs every benchmark and writes their JSON and Markdown reports to ``--out``.

    PYTHONPATH=. python -m benchmarks.run_all            # the full measurements (long)
    PYTHONPATH=. python -m benchmarks.run_all --quick    # a smoke run (a minute or two)

The full run uses each script's defaults; run the scripts one by one to pass
options (``python -m benchmarks.update_cost --help``). The figures of
``benchmarks/RESULTS.md`` come from the commands that ``python -m benchmarks.report``
names, one per file of ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import sys
import time

from benchmarks import collectives, compile_time, large_models, memory, step_cost, update_cost

#: name -> (module, its arguments before ``--json``/``--quick``).
BENCHMARKS = {
    "update_cost": (update_cost, []),
    "step_cost": (step_cost, []),
    "memory": (memory, []),
    "compile_time": (compile_time, []),
    "collectives": (collectives, []),
    "large_models": (large_models, ["run"]),
    "large_models_fit": (large_models, ["fit"]),
}


def main(argv=None) -> dict[str, str]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, one round")
    ap.add_argument("--out", default="runs/benchmarks", help="directory for <name>.json/.md")
    ap.add_argument("--only", nargs="+", choices=list(BENCHMARKS), default=list(BENCHMARKS))
    args = ap.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    written = {}
    for name in args.only:
        mod, first = BENCHMARKS[name]
        json_path = os.path.join(args.out, f"{name}.json")
        md_path = os.path.join(args.out, f"{name}.md")
        sub = [*first, "--json", json_path] + (["--quick"] if args.quick else [])
        t0 = time.perf_counter()
        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            mod.main(sub)
        text = buf.getvalue()
        with open(md_path, "w") as f:
            f.write(f"# {name}\n\n`python -m {mod.__name__} {' '.join(sub)}`\n\n{text}")
        sys.stdout.write(text)
        print(f"[run_all] {name}: {time.perf_counter() - t0:.1f}s -> {md_path}, {json_path}")
        written[name] = md_path
    return written


if __name__ == "__main__":
    main()
