"""Chooses each covariate shift's severity on validation data, before any fine-tuning.

The issue's target: the pretrained model should lose roughly 10–40 points of
accuracy on the shifted data. The rule, fixed before any fine-tuning result was
seen: the smallest severity of the grid at which the pretrained model's accuracy
on the *shifted validation* images is at least 15 points below its accuracy on the
same images unshifted. The test split is not read here.

    python -m experiments.recipe.calibrate --workdir runs/recipe/cache \
        --out experiments/results/recipe_shift_calibration.json
"""

from __future__ import annotations

import argparse
from pathlib import Path

from experiments.common import protocol, results
from experiments.common.cache import RunCache
from experiments.common.data import eval_batches
from experiments.common.shifts import shift_dataset
from experiments.recipe import config, suite

GRIDS = {"rotate": (10.0, 20.0, 30.0, 40.0, 50.0, 60.0), "noise": (32.0, 64.0, 96.0, 128.0, 160.0)}
MIN_DROP = 0.15


def calibrate(workdir: str) -> dict:
    s = suite.Suite(config.get_config("maintenance"), protocol.Runner(RunCache(workdir)))
    s.pretrain()
    params, val = s.pretrained, s.data["new_val"]  # the fine-tuning part's validation images
    evaluate = s._evaluator("new")
    bs = s.cfg.eval_batch_size
    clean = evaluate(params, eval_batches(val, bs))["accuracy"]
    out = {"clean_val_acc": clean, "min_drop": MIN_DROP, "shifts": {}}
    for kind, grid in GRIDS.items():
        rows = []
        for severity in grid:
            shifted = shift_dataset(val, kind, severity, seed=1)  # the suite's validation seed
            acc = evaluate(params, eval_batches(shifted, bs))["accuracy"]
            rows.append({"severity": severity, "val_acc": acc, "drop": clean - acc})
        chosen = next((r["severity"] for r in rows if r["drop"] >= MIN_DROP), None)
        out["shifts"][kind] = {"grid": rows, "chosen": chosen}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="runs/recipe/cache")
    parser.add_argument("--out", type=Path, default=Path("runs/recipe/shift_calibration.json"))
    args = parser.parse_args()
    res = calibrate(args.workdir)
    results.write_json(args.out, {"environment": results.environment(), **res})
    for kind, r in res["shifts"].items():
        cells = ", ".join(f"{g['severity']:g}: {100 * g['val_acc']:.1f}" for g in r["grid"])
        print(f"{kind}: clean {100 * res['clean_val_acc']:.1f}; {cells}; chosen {r['chosen']}")


if __name__ == "__main__":
    main()
