"""Smoke test of the benchmarks: `python -m benchmarks.run_all --quick` runs every benchmark and
writes its reports. No timing is asserted (the numbers depend on the machine and its load)."""

import json
import os

from benchmarks import large_models, run_all


def test_run_all_quick_writes_reports(tmp_path, capsys):
    written = run_all.main(["--quick", "--out", str(tmp_path)])
    assert set(written) == set(run_all.BENCHMARKS)
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
    assert os.path.exists(tmp_path / "memory.md")
    # The child process on simulated devices counted Adam's FSDP collectives.
    coll = json.loads((tmp_path / "collectives.json").read_text())
    assert coll["results"]["Explicit"]["adam"]["dynamic"]["summary"]["all-gather"]["ops"] > 0
    # Every large-model configuration ran in its own process, the losses finite.
    large = json.loads((tmp_path / "large_models.json").read_text())
    assert {r["method"] for r in large["results"]} == set(large_models.METHODS)
    assert all(r["finite"] for r in large["results"])
    fit = json.loads((tmp_path / "large_models_fit.json").read_text())
    assert all(r["max_depth"] >= 2 for r in fit["fit"])
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
