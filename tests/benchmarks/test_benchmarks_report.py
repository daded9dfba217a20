"""``benchmarks/RESULTS.md`` is a view of ``benchmarks/results/*.json``: every table on it equals
its rendering from the committed file (``python -m benchmarks.report --check``)."""

import json

from benchmarks import report


def test_results_page_equals_its_files():
    assert report.main(["--check"]) == 0, "run python -m benchmarks.report"


def test_every_results_file_has_a_block_and_every_block_a_command():
    page = report.PAGE.read_text()
    for name, (_, command) in report.BLOCKS.items():
        assert f"<!-- report:{name} -->" in page, name
        assert command.startswith("python -m benchmarks.") and command.endswith(f"{name}.json")
    assert {p.stem for p in report.RESULTS.glob("*.json")} <= set(report.BLOCKS)


def test_a_missing_file_renders_as_a_note_naming_its_command(tmp_path):
    text = report.render("step_cost", tmp_path)
    assert text.startswith("**Not measured at this commit**")
    assert report.BLOCKS["step_cost"][1] in text


def test_committed_figures_were_measured_without_a_persistent_compilation_cache():
    """The test run turns JAX's persistent compilation cache on (conftest.py); a committed
    file must come from a run without one (compile times would be cache reads)."""
    for path in report.RESULTS.glob("*.json"):
        env = json.loads(path.read_text())["env"]
        assert not env.get("compilation_cache"), f"{path.name}: measured with {env}"
