"""The result tables of the README and the docs are generated from the committed results files."""

from __future__ import annotations

import pytest

from experiments import report


def test_readme_and_docs_tables_equal_the_committed_results():
    """Fails when a table of the README, docs/results.md or docs/cost.md is edited by hand or
    a results file changes without ``python -m experiments.report``."""
    assert report.main(["--check"]) == 0


def test_rewrite_replaces_blocks_and_names_the_stale_ones():
    text = (
        "a\n<!-- report:t1 -->\nold\n<!-- /report:t1 -->\n"
        "b\n<!-- report:t2 -->\nsame\n<!-- /report:t2 -->\n"
    )
    new, changed = report.rewrite(text, {"t1": "| new |", "t2": "same"})
    assert changed == ["t1"]
    assert "<!-- report:t1 -->\n| new |\n<!-- /report:t1 -->" in new
    assert report.rewrite(new, {"t1": "| new |", "t2": "same"})[1] == []
    with pytest.raises(KeyError, match="no results file"):
        report.rewrite(text, {"t1": "x"})


def test_every_block_has_a_renderer_and_one_home():
    """Each file of ``DOCUMENTS`` holds generated blocks, each known to the renderers and in
    exactly one file (the renderers also make tables that only the suites' results.md show)."""
    blocks = report.render_all()
    homes: dict[str, list[str]] = {}
    for document in report.DOCUMENTS:
        names = [m[1] for m in report._BLOCK.findall(report.ROOT.joinpath(document).read_text())]
        assert names, f"{document} has no generated tables"
        for name in names:
            homes.setdefault(name, []).append(document)
    assert set(homes) <= set(blocks)
    assert {name: docs for name, docs in homes.items() if len(docs) != 1} == {}
    assert homes["verdict_summary"] == ["README.md"] and homes["verdict"] == ["docs/results.md"]
    assert homes["cost"] == ["docs/cost.md"]


def test_links_in_blocks_are_relative_to_the_file_that_holds_them():
    body = "[a](experiments/results/x.png), [b](https://x.org/y), [c](#top), [d](README.md)"
    assert report.rebase_links(body, "README.md") == body
    assert report.rebase_links(body, "docs/results.md") == (
        "[a](../experiments/results/x.png), [b](https://x.org/y), [c](#top), [d](../README.md)"
    )


def test_stale_markdown_names_a_results_md_that_differs_from_its_json(tmp_path):
    import shutil

    suite = tmp_path / "recipe_vit_maintenance"
    suite.mkdir()
    shutil.copy(report.RESULTS / "recipe_vit_maintenance" / "results.json", suite)
    assert list(report.stale_markdown(tmp_path)) == [suite / "results.md"]  # missing
    (suite / "results.md").write_text(report.stale_markdown(tmp_path)[suite / "results.md"])
    assert report.stale_markdown(tmp_path) == {}
    text = (suite / "results.md").read_text()
    (suite / "results.md").write_text(text.replace("87.49%", "88.49%", 1))  # a hand edit
    assert list(report.stale_markdown(tmp_path)) == [suite / "results.md"]


def test_every_suite_names_a_report_module_with_the_interface():
    import importlib

    from experiments import verdict

    for _, module, _, _ in verdict.SUITES:
        m = importlib.import_module(module)
        assert all(callable(getattr(m, name, None)) for name in ("blocks", "page", "plot")), module


def test_a_suite_without_tables_of_its_own_renders_the_common_ones():
    import json

    from experiments.common import tables

    res = json.loads((report.RESULTS / "recipe_vit_maintenance" / "results.json").read_text())
    blocks = tables.blocks(res, "x")
    assert list(blocks) == ["x_tuned", "x_vs_best"]
    assert blocks["x_vs_best"] in tables.page(res, "x")
    assert tables.blocks({**res, "selection": {}}, "x") == {}  # a demo: nothing to compare


def test_a_difference_without_interval_shows_its_mean_only():
    from experiments.common import tables
    from experiments.recipe.suite import METRIC

    res = {"metric": METRIC.to_json()}
    assert tables.interval(res, {"mean": 0.01, "lo": -0.02, "hi": 0.04}) == "+1.00 [-2.00, +4.00]"
    assert tables.interval(res, {"mean": 0.01, "lo": None, "hi": None}) == "+1.00"  # one seed
