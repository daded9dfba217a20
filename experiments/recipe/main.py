"""Runs a recipe suite: ``python -m experiments.recipe --config=...:mlp|vit|quick``.

Flags: ``--workdir`` (the run cache, shared by shards, resumable), ``--out``
(results.json, results.md, figures), ``--shard i/n``.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from absl import flags
from ml_collections import config_flags

from experiments.common import protocol, results
from experiments.common.cache import RunCache
from experiments.recipe import report, suite

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/recipe/config.py")
_WORKDIR = flags.DEFINE_string("workdir", "runs/recipe/cache", "run cache directory")
_OUT = flags.DEFINE_string("out", "runs/recipe", "output directory")
_SHARD = flags.DEFINE_string("shard", "0/1", "i/n: run shard i of n")
_PROGRESS = flags.DEFINE_bool("progress", False, "progress bars")


def main(argv: list[str]) -> None:
    del argv
    logging.getLogger().setLevel(logging.INFO)
    index, count = (int(x) for x in _SHARD.value.split("/"))
    runner = protocol.Runner(RunCache(_WORKDIR.value), (index, count))
    s = suite.Suite(_CONFIG.value, runner, progress=_PROGRESS.value)
    res = suite.run(s)
    logging.info("shard %d/%d ran %d jobs", index, count, runner.ran)
    if index != 0:
        return
    out = Path(_OUT.value)
    command = "python -m experiments.recipe " + " ".join(sys.argv[1:])
    path = results.write_json(
        out / "results.json", {"environment": results.environment(command), **res}
    )
    res = json.loads(path.read_text())
    prefix = f"recipe_{_CONFIG.value.mode}"
    report.write_markdown(res, out / "results.md", prefix)
    report.plot(res, out)
    print((out / "results.md").read_text())
