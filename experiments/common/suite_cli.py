"""The command line shared by the protocol suites (``python -m experiments.paper_toy``,
``python -m experiments.recipe``): where the run cache and the outputs live, which shard
this process runs, and the writing of ``results.json`` by shard 0.

Flags (defined by :func:`main` when a suite runs as a program, never on import, so that
the suites and the older pipelines can share one process, e.g. under pytest):
  --config: the suite's ml_collections config file, with ``--config.<field>=value``.
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
from typing import Any, Protocol

import ml_collections

from experiments.common import protocol, results
from experiments.common.cache import RunCache


class SuiteModule(Protocol):
    """What a suite module (``experiments.<suite>.suite``) provides: the suite over a
    config and a runner, and its protocol run to a results dict."""

    def Suite(
        self, cfg: ml_collections.ConfigDict, runner: protocol.Runner, *, progress: bool
    ) -> Any: ...

    def run(self, suite: Any) -> Mapping[str, Any]: ...


#: (results as written, out_dir) -> the Markdown page written (printed at the end).
WriteOutputs = Callable[[dict[str, Any], Path], Path]


def run(
    suite: str,
    config: ml_collections.ConfigDict,
    module: SuiteModule,
    write_outputs: WriteOutputs,
    *,
    workdir: str | None = None,
    out: str | None = None,
    shard: str = "0/1",
    progress: bool = False,
    command: str | None = None,
) -> Path | None:
    """Runs (or reads from the cache) ``module``'s suite; shard 0 writes ``results.json`` with
    :func:`results.environment` and the outputs rendered from the file as written.

    Returns the Markdown page shard 0 wrote (None on the other shards).
    """
    index, count = (int(x) for x in shard.split("/"))
    runner = protocol.Runner(RunCache(workdir or f"runs/{suite}/cache"), (index, count))
    res = module.run(module.Suite(config, runner, progress=progress))
    logging.info("shard %s ran %d jobs", runner.shard, runner.ran)
    if index != 0:
        return None
    out_dir = Path(out or f"runs/{suite}")
    command = command or f"python -m experiments.{suite} " + " ".join(sys.argv[1:])
    path = results.write_json(
        out_dir / "results.json", {"environment": results.environment(command), **res}
    )
    return write_outputs(json.loads(path.read_text()), out_dir)


def main(suite: str, config_file: str, module: SuiteModule, write_outputs: WriteOutputs) -> None:
    """The program: defines the flags, parses the command line, runs, prints the page."""
    from absl import app, flags
    from ml_collections import config_flags

    config = config_flags.DEFINE_config_file("config", config_file)
    workdir = flags.DEFINE_string("workdir", None, "run cache (default runs/<suite>/cache)")
    out = flags.DEFINE_string("out", None, "output directory (default runs/<suite>)")
    shard = flags.DEFINE_string("shard", "0/1", "i/n: run shard i of n")
    progress = flags.DEFINE_bool("progress", False, "progress bars")

    def program(argv: list[str]) -> None:
        del argv
        logging.getLogger().setLevel(logging.INFO)
        page = run(
            suite,
            config.value,
            module,
            write_outputs,
            workdir=workdir.value,
            out=out.value,
            shard=shard.value,
            progress=progress.value,
        )
        if page is not None:
            print(page.read_text())

    app.run(program)
