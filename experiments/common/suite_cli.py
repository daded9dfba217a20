"""The command line of every suite (``python -m experiments.paper_toy``,
``python -m experiments.recipe``): where the run cache and the outputs live, which shard
or which process of a multi-process run this is, and the writing of ``results.json``.

Flags (defined by :func:`main` when a suite runs as a program, never on import):
  --config: the suite's ml_collections config file, with ``--config.<field>=value``.
  --workdir: the run cache, shared by shards and sessions (default ``runs/<suite>/cache``).
  --out: ``results.json``, ``results.md`` and the figures (default ``runs/<suite>``).
  --shard: ``i/n``: this process runs the jobs of shard i of n (start n processes).
  --progress: progress bars.
  --coordinator_address, --num_processes, --process_id (and ``--distributed``,
  ``--local_device_ids``): one run over several processes joined by ``jax.distributed``
  (:mod:`experiments.common.distributed`): every process runs every job together, data
  parallel over all their devices (a suite whose training supports it: the recipe);
  process 0 alone writes the cache records and the outputs. The cache must be on a
  filesystem every process shares.

Shards and processes are two ways to use more machines: shards split the *jobs* (each
process runs its own runs, no communication), processes split each *run*'s batches.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_collections

from experiments.common import protocol, results
from experiments.common import suite as framework
from experiments.common.cache import RunCache

#: (results as written, out_dir) -> the Markdown page written (printed at the end).
WriteOutputs = Callable[[dict[str, Any], Path], Path]
SuiteClass = Callable[..., framework.Suite]
#: What runs a configured suite into its results dict: :func:`experiments.common.suite.run`
#: (the protocol), or a suite's own study on the same cache (e.g. a pilot that fixes a budget).
Protocol = Callable[[framework.Suite], dict[str, Any]]


def run(
    suite: str,
    config: ml_collections.ConfigDict,
    suite_cls: SuiteClass,
    write_outputs: WriteOutputs,
    *,
    workdir: str | None = None,
    out: str | None = None,
    shard: str = "0/1",
    progress: bool = False,
    command: str | None = None,
    protocol_fn: Protocol = framework.run,
) -> Path | None:
    """Runs (or reads from the cache) the suite; process 0 of shard 0 writes ``results.json``
    with :func:`results.environment` and the outputs rendered from the file as written.

    Returns the Markdown page written (None on the other shards and processes).
    """
    import jax

    index, count = (int(x) for x in shard.split("/"))
    collective = jax.process_count() > 1
    cache = RunCache(workdir or f"runs/{suite}/cache")
    runner = protocol.Runner(cache, (index, count), collective=collective)
    res = protocol_fn(suite_cls(config, runner, progress=progress))
    logging.info("shard %s ran %d jobs", runner.shard, runner.ran)
    if index != 0 or jax.process_index() != 0:
        return None
    out_dir = Path(out or f"runs/{suite}")
    command = command or f"python -m experiments.{suite} " + " ".join(sys.argv[1:])
    path = results.write_json(
        out_dir / "results.json", {"environment": results.environment(command), **res}
    )
    return write_outputs(json.loads(path.read_text()), out_dir)


def main(
    suite: str,
    config_file: str,
    suite_cls: SuiteClass,
    write_outputs: WriteOutputs,
    protocol_fn: Protocol = framework.run,
) -> None:
    """The program: defines the flags, joins the other processes, runs (``protocol_fn``,
    the protocol by default), prints the page."""
    from absl import app, flags
    from ml_collections import config_flags

    from experiments.common import distributed

    config = config_flags.DEFINE_config_file("config", config_file)
    workdir = flags.DEFINE_string("workdir", None, "run cache (default runs/<suite>/cache)")
    out = flags.DEFINE_string("out", None, "output directory (default runs/<suite>)")
    shard = flags.DEFINE_string("shard", "0/1", "i/n: run shard i of n")
    progress = flags.DEFINE_bool("progress", False, "progress bars")
    distributed.define_flags()

    def program(argv: list[str]) -> None:
        del argv
        logging.getLogger().setLevel(logging.INFO)
        distributed.initialize()  # before anything touches a device
        page = run(
            suite,
            config.value,
            suite_cls,
            write_outputs,
            workdir=workdir.value,
            out=out.value,
            shard=shard.value,
            progress=progress.value,
            protocol_fn=protocol_fn,
        )
        if page is not None:
            print(page.read_text())

    app.run(program)
