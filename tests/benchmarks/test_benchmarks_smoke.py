"""Smoke test of the benchmarks: `python -m benchmarks.run_all --quick` runs the benchmarks (all
but the collectives, tested on their own) and writes their reports. No timing is asserted (the
numbers depend on the machine and its load)."""

import json
import math
import os

from benchmarks import _common as C
from benchmarks import large_models, run_all

#: ``collectives.main`` runs in tests/benchmarks/test_collectives.py (more configurations,
#: both axis types, the same command-line path); here it would only run again.
RUN_HERE = [name for name in run_all.BENCHMARKS if name != "collectives"]


def test_run_all_quick_writes_reports(tmp_path, capsys):
    written = run_all.main(["--quick", "--out", str(tmp_path), "--only", *RUN_HERE])
    assert set(written) == set(RUN_HERE)
    for name in written:
        md = (tmp_path / f"{name}.md").read_text()
        assert md.startswith(f"# {name}")
        with open(tmp_path / f"{name}.json") as f:
            payload = json.load(f)
        assert payload["env"]["jax"]
        assert payload["environment"]["command"].startswith("python -m benchmarks.")
    out = capsys.readouterr().out
    assert "ratio to Adam" in out
    update = json.loads((tmp_path / "update_cost.json").read_text())
    analysis = update["configs"][0]["analysis"]
    # The pass counter found the parameter-sized traffic of both programs.
    assert analysis["adam"]["cycle"]["read_passes"] > 0
    assert set(analysis["profit_sgd_n1"]["phases"]) == {"ref (first, saves θ_ref)", "main"}
    if C.minor_faults() is not None:  # the platform counts page faults
        timing = update["configs"][0]["timing_donated"]
        assert all("faults_per_call" in timing[m] for m in ("adam", "profit_sgd_n1"))
        assert "minor page faults/call" in (tmp_path / "update_cost.md").read_text()
    assert os.path.exists(tmp_path / "memory.md")
    # Every large-model configuration ran in its own process, the losses finite; the tiny
    # ViT's bf16 parameters, and PROFIT's state (θ_ref and Adam's two moments) in bf16.
    large = json.loads((tmp_path / "large_models.json").read_text())
    assert {r["method"] for r in large["results"]} == set(large_models.METHODS)
    for r in large["results"]:
        assert r["finite"] and len(r["losses"]) == 2 and len(r["pair_times_per_grad_s"]) == 1
        assert r["param_bytes"] == 2 * r["param_count"]
        assert r["estimate_bytes"] > r["param_bytes"] and r["alias"] > 0  # donated
        # Measured before the steps: the heap's free pages handed back (glibc), then read.
        assert r["rss_after_trim_kib"] > 0
        if r["malloc_trim"]:
            assert r["rss_after_trim_kib"] <= r["rss_after_init_kib"]
    (adam, profit, lean) = (
        next(r for r in large["results"] if r["method"] == m)
        for m in ("adam", "profit", "profit_lean")
    )
    assert profit["state_bytes"] >= 3 * profit["param_bytes"]
    assert lean["state_bytes"] - adam["state_bytes"] < 64  # a few scalars, no θ_ref
    assert "| profit |" in (tmp_path / "large_models.md").read_text()
    # The depth fit of the tiny family: two depths compiled, a depth within the budget.
    fit = json.loads((tmp_path / "large_models_fit.json").read_text())
    for row in fit["fit"]:
        assert row["bytes_per_block"] > 0 and row["max_depth"] >= 2
        assert row["estimate_at_max"] <= fit["budget_gib"] * 2**30
        assert math.isfinite(row["max_params"])
    assert "T (16, 2, 32)" in (tmp_path / "large_models_fit.md").read_text()
    # The README's cost table renders from the file, with its provenance.
    from benchmarks import update_cost

    assert update["environment"]["command"].startswith("python -m benchmarks.update_cost")
    table = update_cost.readme_table(update)
    assert "| time per call / Adam, median [min–max over rounds] |" in table
    assert "PROFIT n_ref=1" in table and "load average (1 min)" in table


def test_readme_cost_table_comes_from_the_committed_benchmark():
    from experiments import report

    update = json.loads(report.COST_RESULTS.read_text())
    assert update["environment"]["git_dirty"] is False  # measured on a committed tree
    load = update["configs"][0]["load_before"][0]
    assert load < 1.0, f"the committed figures were taken at load {load}: not a quiet machine"
