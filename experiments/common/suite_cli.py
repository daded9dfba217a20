"""The command line shared by the protocol suites (``python -m experiments.paper_toy``,
``python -m experiments.recipe``): where the run cache and the outputs live, which shard
this process runs, and the writing of ``results.json`` by shard 0.

Flags (besides each suite's ``--config``):
  --workdir: the run cache, shared by shards and sessions (default ``runs/<suite>/cache``).
  --out: ``results.json``, ``results.md`` and the figures (default ``runs/<suite>``).
  --shard: ``i/n``: this process runs the jobs of shard i of n (start n processes).
  --progress: progress bars.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from absl import flags

from experiments.common import protocol, results
from experiments.common.cache import RunCache

_WORKDIR = flags.DEFINE_string("workdir", None, "run cache (default runs/<suite>/cache)")
_OUT = flags.DEFINE_string("out", None, "output directory (default runs/<suite>)")
_SHARD = flags.DEFINE_string("shard", "0/1", "i/n: run shard i of n")
_PROGRESS = flags.DEFINE_bool("progress", False, "progress bars")


def progress() -> bool:
    return _PROGRESS.value


def runner(suite: str) -> protocol.Runner:
    """The sharded runner over ``--workdir`` for ``suite``."""
    index, count = (int(x) for x in _SHARD.value.split("/"))
    return protocol.Runner(RunCache(_WORKDIR.value or f"runs/{suite}/cache"), (index, count))


def finish(
    suite: str,
    run: protocol.Runner,
    res: Mapping[str, Any],
    write_outputs: Callable[[dict[str, Any], Path], Path],
) -> None:
    """Shard 0 writes ``results.json`` (with :func:`results.environment`) and the outputs
    ``write_outputs(results, out_dir)`` renders from the file as written; prints them."""
    logging.info("shard %s ran %d jobs", run.shard, run.ran)
    if run.shard[0] != 0:
        return
    out = Path(_OUT.value or f"runs/{suite}")
    command = f"python -m experiments.{suite} " + " ".join(sys.argv[1:])
    path = results.write_json(
        out / "results.json", {"environment": results.environment(command), **res}
    )
    print(write_outputs(json.loads(path.read_text()), out).read_text())
