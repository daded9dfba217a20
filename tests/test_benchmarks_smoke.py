"""Smoke test of the benchmarks: `python -m benchmarks.run_all --quick` runs and writes its
reports. No timing is asserted (the numbers depend on the machine and its load)."""

import json
import os

from benchmarks import run_all


def test_run_all_quick_writes_reports(tmp_path, capsys):
    written = run_all.main(["--quick", "--out", str(tmp_path)])
    assert set(written) == {"update_cost", "step_cost", "memory", "compile_time"}
    for name in written:
        md = (tmp_path / f"{name}.md").read_text()
        assert md.startswith(f"# {name}")
        with open(tmp_path / f"{name}.json") as f:
            payload = json.load(f)
        assert payload["env"]["jax"]
    out = capsys.readouterr().out
    assert "ratio to Adam" in out
    update = json.loads((tmp_path / "update_cost.json").read_text())
    analysis = update["configs"][0]["analysis"]
    # The pass counter found the parameter-sized traffic of both programs.
    assert analysis["adam"]["cycle"]["read_passes"] > 0
    assert set(analysis["profit_sgd_n1"]["phases"]) == {"ref (first, saves θ_ref)", "main"}
    assert os.path.exists(tmp_path / "memory.md")
