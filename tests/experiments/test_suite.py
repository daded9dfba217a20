"""The suite framework reproduces the committed results from the committed run caches.

Re-assembling a suite whose every job is in ``experiments/results/cache`` runs nothing
(a runner that refuses to run proves it) and must give its committed ``results.json``:
the same job keys, tuning, selections, rows in both budget views, comparisons.
"""

from __future__ import annotations

import json

import pytest

from experiments.common import protocol, results
from experiments.common import suite as framework
from experiments.common.cache import RunCache
from experiments.report import RESULTS


class NoRun(protocol.Runner):
    def _run_claimed(self, config, fn):
        raise AssertionError(f"not in the committed cache: {config}")


def _without_timings(rows):
    strip = lambda runs: [{k: v for k, v in r.items() if not k.endswith("time_s")} for r in runs]
    return {label: {**row, "runs": strip(row["runs"])} for label, row in rows.items()}


@pytest.mark.slow
@pytest.mark.parametrize("folder", ["paper_toy", "recipe_mlp"])
def test_committed_results_reassemble_from_the_committed_cache(folder):
    if folder == "paper_toy":
        from experiments.paper_toy import config, suite

        cfg, cache = config.get_config("full"), "paper_toy"
    else:
        from experiments.recipe import config, suite

        cfg, cache = config.get_config("mlp"), "recipe"
    s = suite.Suite(cfg, NoRun(RunCache(RESULTS / "cache" / cache)))
    got = json.loads(json.dumps(results.to_jsonable(framework.run(s))))
    want = json.loads((RESULTS / folder / "results.json").read_text())
    for key in ("config", "metric", "pretrained", "selection", "best_baseline", "plateau"):
        assert got[key] == want[key], key
    assert got["comparisons"] == want["comparisons"]
    assert list(got["rows"]) == list(want["rows"])
    assert _without_timings(got["rows"]) == _without_timings(want["rows"])
