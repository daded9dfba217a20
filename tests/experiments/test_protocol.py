"""The protocol suites' shared machinery: run cache, sharded runner, tuning, statistics."""

from __future__ import annotations

import json
import math
import threading
import time

import numpy as np
import pytest
from scipy import stats

from experiments.common import protocol, results
from experiments.common.cache import RunCache, fingerprint


def test_cache_is_keyed_by_the_full_config(tmp_path):
    cache = RunCache(tmp_path)
    cfg = {"lr": 0.1, "seed": 0, "grid": {"a": [1, 2]}}
    assert cache.get(cfg) is None
    cache.put(cfg, {"acc": np.float32(0.5)})
    assert cache.get({"seed": 0, "grid": {"a": [1, 2]}, "lr": 0.1}) == {"acc": 0.5}
    assert cache.get({**cfg, "seed": 1}) is None
    assert fingerprint(cfg) != fingerprint({**cfg, "lr": 0.2})
    # A file whose stored config differs (collision, hand edit) is never returned.
    path = cache.path(cfg)
    payload = json.loads(path.read_text())
    payload["config"]["lr"] = 0.3
    path.write_text(json.dumps(payload))
    assert cache.get(cfg) is None
    path.write_text("{half a file")  # a torn write from another tool
    assert cache.get(cfg) is None
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temporaries


def test_runner_resumes_an_interrupted_suite_without_redoing_runs(tmp_path):
    calls = []

    def job(i, fail_at=None):
        def run():
            if i == fail_at:
                raise KeyboardInterrupt  # the session ends mid-suite
            calls.append(i)
            return {"value": i * i}

        return ({"job": i}, run)

    runner = protocol.Runner(RunCache(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        runner.run_all([job(i, fail_at=3) for i in range(6)])
    assert calls == [0, 1, 2]
    resumed = protocol.Runner(RunCache(tmp_path))
    records = resumed.run_all([job(i) for i in range(6)])
    assert calls == [0, 1, 2, 3, 4, 5]  # 0-2 were not run again
    assert resumed.ran == 3
    assert [r["value"] for r in records] == [i * i for i in range(6)]


def test_two_shards_split_the_work_and_both_see_every_record(tmp_path):
    ran: list[tuple[int, int]] = []
    lock = threading.Lock()

    def jobs(shard):
        def make(i):
            def run():
                with lock:
                    ran.append((shard, i))
                time.sleep(0.02)  # long enough that neither shard takes all jobs first
                return {"value": i}

            return ({"job": i}, run)

        return [make(i) for i in range(20)]

    out = {}
    start = threading.Barrier(2)

    def work(shard):
        runner = protocol.Runner(RunCache(tmp_path), (shard, 2), poll_s=0.01, timeout_s=30)
        start.wait()
        out[shard] = runner.run_all(jobs(shard))

    threads = [threading.Thread(target=work, args=(s,)) for s in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(i for _, i in ran) == list(range(20))  # each job ran exactly once
    assert {s for s, _ in ran} == {0, 1}
    assert out[0] == out[1] == [{"value": i} for i in range(20)]
    with pytest.raises(ValueError, match="shard"):
        protocol.Runner(RunCache(tmp_path), (2, 2))


def test_a_shard_alone_takes_the_other_shards_jobs_from_the_end(tmp_path):
    ran = []

    def make(i):
        return ({"job": i}, lambda: ran.append(i) or {"value": i})

    jobs = [make(i) for i in range(12)]
    runner = protocol.Runner(RunCache(tmp_path), (0, 2), poll_s=0.01, timeout_s=5)
    records = runner.run_all(jobs)
    assert records == [{"value": i} for i in range(12)]  # no partner needed: nothing waits
    own = [i for i, (c, _) in enumerate(jobs) if runner.owns(c)]
    others = [i for i, (c, _) in enumerate(jobs) if not runner.owns(c)]
    assert own and others
    assert ran == own + others[::-1]  # its own in order, then the others' from the end
    assert runner.ran == 12
    assert not list((tmp_path / ".claims").iterdir())  # every claim released


def test_claims_keep_live_jobs_and_take_over_dead_ones(tmp_path):
    import os
    import socket
    import subprocess
    import sys

    runner = protocol.Runner(RunCache(tmp_path), poll_s=0.01, timeout_s=0.2)
    live, dead = {"job": "live"}, {"job": "dead"}
    finished = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    for config, pid in ((live, os.getpid()), (dead, int(finished.stdout))):
        runner.claim_path(config).parent.mkdir(parents=True, exist_ok=True)
        runner.claim_path(config).write_text(f"{socket.gethostname()} {pid}")
    ran = []
    with pytest.raises(TimeoutError, match="no shard produced"):
        runner.run_all(
            [(dead, lambda: ran.append("dead") or {}), (live, lambda: ran.append("live") or {})]
        )
    assert ran == ["dead"]  # the dead process's claim was taken over; the live one kept
    assert runner.claim_path(live).exists() and not runner.claim_path(dead).exists()


def _quadratic_score(best_log_lr):
    def score(points):
        return [(math.log10(hp["learning_rate"]) - best_log_lr) ** 2 for _, hp in points]

    return score


def test_tune_widens_a_grid_whose_best_value_sits_at_an_edge():
    grids = {"m": {"learning_rate": (1e-3, 1e-2, 1e-1)}}
    sel = protocol.tune(grids, _quadratic_score(1.0), max_widening=5)["m"]
    assert sel.hparams["learning_rate"] == pytest.approx(10.0)
    assert not sel.at_edge
    assert sel.learning_rates[-1] == pytest.approx(100.0)  # widened one past the optimum
    capped = protocol.tune(grids, _quadratic_score(1.0), max_widening=1)["m"]
    assert capped.at_edge
    assert capped.hparams["learning_rate"] == pytest.approx(1.0)
    interior = protocol.tune(grids, _quadratic_score(-2.0), max_widening=5)["m"]
    assert interior.learning_rates == (1e-3, 1e-2, 1e-1)
    assert not interior.at_edge


def test_tune_searches_the_product_and_scores_each_point_once():
    seen = []

    def score(points):
        seen.extend(points)
        return [
            hp["learning_rate"] * (1 if hp["ref_ratio"] is None else hp["ref_ratio"])
            for _, hp in points
        ]

    grids = {"p": {"learning_rate": (1.0, 2.0, 3.0), "ref_ratio": (10.0, None)}}
    sel = protocol.tune(grids, score, max_widening=0)["p"]
    assert len(seen) == 6
    assert sel.hparams == {"learning_rate": 1.0, "ref_ratio": None}
    assert sel.at_edge  # lowest lr, and no widening allowed


def test_diverged_points_never_win():
    grids = {"m": {"learning_rate": (1.0, 2.0, 3.0)}}
    score = lambda pts: [
        math.nan if hp["learning_rate"] == 2.0 else hp["learning_rate"] for _, hp in pts
    ]
    sel = protocol.tune(grids, score, max_widening=0)["m"]
    assert sel.hparams["learning_rate"] == 1.0


def test_standard_error_and_paired_interval_match_scipy():
    a = [0.71, 0.69, 0.75, 0.70, 0.73]
    b = [0.65, 0.66, 0.71, 0.69, 0.66]
    mean, se = results.mean_se(a)
    assert mean == pytest.approx(np.mean(a))
    assert se == pytest.approx(stats.sem(a))
    d = results.paired_difference(a, b)
    want = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert (d["lo"], d["hi"]) == pytest.approx((want.low, want.high))
    assert d["n"] == 5
    assert math.isnan(results.paired_difference([1.0], [0.0])["lo"])
    with pytest.raises(ValueError, match="3 values against 2"):
        results.paired_difference([1, 2, 3], [1, 2])


def test_environment_names_command_commit_versions_and_machine():
    env = results.environment("python -m x")
    assert env["command"] == "python -m x"
    assert len(env["git_commit"]) == 40 or env["git_commit"] == "unknown"
    assert {"jax", "optax", "flax", "numpy", "python"} <= set(env["versions"])
    assert env["machine"]["backend"] == "cpu"


def test_metric_reads_a_diverged_run_as_nan():
    """NaN is stored as JSON null; every reader turns it back into NaN, never a TypeError."""
    from types import SimpleNamespace

    from experiments.common.suite import Suite
    from experiments.paper_toy.suite import METRIC

    errors = SimpleNamespace(metric=METRIC)  # the criterion reads only the suite's metric
    assert math.isnan(protocol.metric({"old": None, "new": None}, "mean"))
    assert math.isnan(protocol.metric({"old": 0.5, "new": None}, "new"))
    assert protocol.metric({"old": 0.5, "new": 0.25}, "mean") == 0.375
    assert Suite.criterion(errors, {"val": {"old": None, "new": None}}) == math.inf


def test_refine_scores_one_more_hparam_at_the_selected_point_only():
    first = {
        "p": protocol.Selection({"learning_rate": 0.1, "ref_ratio": 10.0}, 1.0, False, (0.1,), []),
        "q": protocol.Selection({"learning_rate": 0.1}, 1.0, False, (0.1,), []),
    }
    asked = []

    def score(points):
        asked.extend(points)
        return [{2: 1.0, 5: 0.2}[hp["n_ref"]] for _, hp in points]

    out = protocol.refine(first, ["p"], "n_ref", (1, 2, 5), score, default=1)
    # n_ref 1 is the first stage's point (no key): not run again; 2 ties (kept out), 5 wins
    assert [hp for _, hp in asked] == [
        {"learning_rate": 0.1, "ref_ratio": 10.0, "n_ref": 2},
        {"learning_rate": 0.1, "ref_ratio": 10.0, "n_ref": 5},
    ]
    assert out["p"].hparams == {"learning_rate": 0.1, "ref_ratio": 10.0, "n_ref": 5}
    assert out["p"].score == 0.2 and len(out["p"].scores) == 2
    assert out["q"] is first["q"]  # not a listed label
    # ties keep the first stage's point; nothing to do without values
    tie = protocol.refine(first, ["p"], "n_ref", (2,), lambda pts: [1.0] * len(pts), default=1)
    assert tie["p"].hparams == first["p"].hparams
    assert protocol.refine(first, ["p"], "n_ref", (), score, default=1) == first
