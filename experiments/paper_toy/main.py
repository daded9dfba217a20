"""Runs the paper toy suite: ``python -m experiments.paper_toy --config=...[:demo|:quick]``.

Flags:
  --config: the ml_collections config (``experiments/paper_toy/config.py``), with
    ``--config.<field>=value`` overrides.
  --workdir: the run cache (shared by shards; resumable).
  --out: where ``results.json``, ``results.md`` and the figures go.
  --shard: ``i/n``: this process runs the jobs of shard i of n (run n processes).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from absl import flags
from ml_collections import config_flags

from experiments.common import protocol
from experiments.common.cache import RunCache
from experiments.paper_toy import report, suite

_CONFIG = config_flags.DEFINE_config_file("config", "experiments/paper_toy/config.py")
_WORKDIR = flags.DEFINE_string("workdir", "runs/paper_toy/cache", "run cache directory")
_OUT = flags.DEFINE_string("out", "runs/paper_toy", "output directory")
_SHARD = flags.DEFINE_string("shard", "0/1", "i/n: run shard i of n")
_PROGRESS = flags.DEFINE_bool("progress", False, "progress bars")


def main(argv: list[str]) -> None:
    del argv
    logging.getLogger().setLevel(logging.INFO)
    index, count = (int(x) for x in _SHARD.value.split("/"))
    s = suite.Suite(
        _CONFIG.value,
        RunCache(_WORKDIR.value),
        protocol.Runner(RunCache(_WORKDIR.value), (index, count)),
        progress=_PROGRESS.value,
    )
    res = suite.run(s)
    suite.log_progress(s)
    if index != 0:
        return  # shard 0 writes the outputs
    out = Path(_OUT.value)
    command = "python -m experiments.paper_toy " + " ".join(sys.argv[1:])
    path = suite.write(res, out / "results.json", command)
    res = __import__("json").loads(path.read_text())
    report.write_markdown(res, out / "results.md")
    report.plot(res, out)
    print((out / "results.md").read_text())
