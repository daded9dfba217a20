"""Smoke test of benchmarks/large_models.py's code path on a tiny ViT (no timing assertions)."""

import math

import pytest

from benchmarks import large_models as lm

TINY = "w16-d1-h2-m32/8"


def test_make_model_named_and_custom():
    assert lm.make_model("B/16").width == 768
    assert lm.make_model("L/16").depth == 24
    m = lm.make_model(TINY)
    assert (m.width, m.depth, m.num_heads, m.mlp_dim, m.patch_size) == (16, 1, 2, 32, 8)
    with pytest.raises(ValueError, match="expected one of"):
        lm.make_model("w32-d1/8x")


def test_measure_one_profit_runs_a_cycle_and_reports_memory():
    res = lm.measure_one(TINY, "profit", batch=2, image=8, steps=2, warmup=0)
    assert res["finite"]
    assert len(res["losses"]) == 2 and len(res["pair_times_per_grad_s"]) == 1
    assert len(res["load1"]) == 1  # the load at the start of the one timed block
    # bf16 parameters; PROFIT's state holds θ_ref and Adam's two moments, all in bf16.
    assert res["param_bytes"] == 2 * res["param_count"]
    assert res["state_bytes"] >= 3 * res["param_bytes"]
    assert res["estimate_bytes"] > res["param_bytes"]
    assert res["alias"] > 0  # params and state are donated
    rows = lm.summarize([res])
    assert "| profit |" in lm.markdown_run(rows)


def test_fit_family_finds_a_depth():
    rows = lm.fit_family(
        lm.QUICK_FAMILY,
        ["adam"],
        batch=2,
        image=8,
        patch=8,
        depths=(1, 2),
        budget_bytes=2**20,
        log=lambda s: None,
    )
    (row,) = rows
    assert row["bytes_per_block"] > 0
    assert row["max_depth"] >= 2
    assert row["estimate_at_max"] <= 2**20
    assert math.isfinite(row["max_params"])
    assert "T (16, 2, 32)" in lm.markdown_fit(rows, 0.001)
