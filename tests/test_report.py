"""The README's result tables are generated from the committed results files."""

from __future__ import annotations

import pytest

from experiments import report


def test_readme_tables_equal_the_committed_results():
    """Fails when a README table is edited by hand or a results file changes without
    ``python -m experiments.report``."""
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


def test_every_readme_block_has_a_renderer():
    blocks = report.render_all()
    names = report._BLOCK.findall(report.ROOT.joinpath("README.md").read_text())
    assert names, "the README has no generated tables"
    assert {name for _, name, _, _ in names} <= set(blocks)
