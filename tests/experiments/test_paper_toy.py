"""The paper's 2D toy: data, model, schedules, and the whole suite in quick mode."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

from experiments.common import protocol
from experiments.common import suite as framework
from experiments.common.cache import RunCache
from experiments.paper_toy import config, data, report, suite
from experiments.paper_toy.model import MLP
from profit_optax import masks


def test_data_follows_the_paper():
    cfg = config.get_config("quick").data
    toy = data.make_data(cfg, seed=3)
    for task, (low, high) in ((toy.old, cfg.old_box), (toy.new, cfg.new_box)):
        xs = np.concatenate([task.train.x, task.val.x, task.test.x])
        assert xs.min() >= low and xs.max() <= high
        assert len(task.train.x) + len(task.val.x) == cfg.n_train
        assert len(task.val.x) == cfg.n_val and len(task.test.x) == cfg.n_test
        clean = data.target(task.test.x, cfg.frequency)[:, None]
        np.testing.assert_allclose(task.test.y, clean, atol=1e-6)  # noiseless test targets
        noise = task.train.y - data.target(task.train.x, cfg.frequency)[:, None]
        assert 0.8 < noise.std() < 1.2  # N(0, 1) training noise
        val_noise = task.val.y - data.target(task.val.x, cfg.frequency)[:, None]
        assert 0.7 < val_noise.std() < 1.3  # carved from the noisy training points
    again = data.make_data(cfg, seed=3)
    np.testing.assert_array_equal(again.new.train.x, toy.new.train.x)
    assert not np.array_equal(data.make_data(cfg, seed=4).new.train.x, toy.new.train.x)


def test_model_is_the_papers_mlp():
    params = MLP((500, 500)).init(jax.random.key(0), np.zeros((1, 2), np.float32))["params"]
    shapes = {k: {n: v.shape for n, v in p.items()} for k, p in params.items()}
    assert shapes == {
        "Dense_0": {"kernel": (2, 500), "bias": (500,)},
        "LayerNorm_0": {"scale": (500,), "bias": (500,)},
        "Dense_1": {"kernel": (500, 500), "bias": (500,)},
        "LayerNorm_1": {"scale": (500,), "bias": (500,)},
        "head": {"kernel": (500, 1), "bias": (1,)},
    }
    assert (
        masks.head_mask(params)["head"]["kernel"] and not masks.head_mask(params)["Dense_1"]["bias"]
    )
    assert masks.embedding_mask(params)["Dense_0"]["kernel"]


def _suite(tmp_path, mode="quick", **overrides):
    cfg = config.get_config(mode)
    cfg.update(overrides)
    return suite.Suite(cfg, protocol.Runner(RunCache(tmp_path / "cache")))


def test_budget_views_and_the_papers_schedule(tmp_path):
    s = _suite(tmp_path)
    budget = s.cfg.finetune.budget
    method = s.build("profit_rmsprop", {"learning_rate": 5e-4, "ref_ratio": 100.0}, budget)
    assert (method.grads_per_step, method.period) == (2, 2)  # n_ref = 1: two per main step
    # The equal-main-steps view: twins of the multi-gradient rows only, twice the calls.
    rows = {
        "full_ft": {"method": "rmsprop", "hparams": {"learning_rate": 5e-4}},
        "profit_rmsprop": {"method": "profit_rmsprop", "hparams": {"learning_rate": 5e-4}},
        "paper:profit_rmsprop@auto": {
            "method": "profit_rmsprop",
            "hparams": {"learning_rate": 5e-4, "ref_ratio": None},
            "base": "profit_rmsprop",
        },
    }
    twins = framework.main_steps_twins(s, rows)
    assert list(twins) == ["profit_rmsprop@main", "paper:profit_rmsprop@auto@main"]
    assert all(t["calls"] == 2 * budget and t["budget"] == "main" for t in twins.values())
    # The paper's schedule (x0.95 every 100 of 1,500 steps) stretched over any run length.
    full = suite.Suite(config.get_config("full"), s.runner)
    paper = full.schedule(5e-4, 1500)
    assert float(paper(99)) == pytest.approx(5e-4)
    assert float(paper(100)) == pytest.approx(5e-4 * 0.95)
    assert float(paper(1499)) == pytest.approx(5e-4 * 0.95**14)
    half = full.schedule(5e-4, 750)  # PROFIT's main steps at equal gradients
    assert float(half(50)) == pytest.approx(5e-4 * 0.95)


@pytest.fixture(scope="module")
def quick_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("paper_toy")


def test_quick_suite_end_to_end_and_resume(quick_cache):
    s = _suite(quick_cache)
    res = framework.run(s)
    assert set(res["selection"]) == set(s.cfg.methods)
    # The paper's rows run at the paper's lr, PROFIT at every ratio of its grid.
    assert {
        "paper:full_ft",
        "paper:head_only",
        "paper:profit_rmsprop@100",
        "paper:profit_rmsprop@auto",
    } <= set(res["rows"])
    assert res["best_baseline"] in {"full_ft", "head_only"}
    assert res["plateau"] is None  # the paper's budget: no plateau check
    budget = s.cfg.finetune.budget
    for label, row in res["rows"].items():
        assert len(row["runs"]) == len(s.cfg.seeds)
        assert all(r["test"] for r in row["runs"])  # reporting runs read the test split
        assert all(r["calls"] == row["calls"] for r in row["runs"])
        assert (row["budget"] == "main") == label.endswith("@main")
        assert row["calls"] == (2 * budget if label.endswith("@main") else budget)
        assert {"val_old", "val_new"} <= set(row["runs"][0]["curve"][-1])
    assert "profit_rmsprop@main" in res["rows"] and "full_ft@main" not in res["rows"]
    chosen = [k for k in res["comparisons"] if k.startswith("paper:")]
    assert len(chosen) == 2 and chosen[1] == chosen[0] + "@main"  # one ratio, both views
    for name, table in report.blocks(json.loads(json.dumps(res, default=float))).items():
        assert table.startswith("| "), name
    # Resume: a second run reads every job from the cache and gives the same results.
    again = _suite(quick_cache)
    assert framework.run(again)["rows"] == res["rows"]
    assert again.runner.ran == 0


def test_demo_mode_needs_no_tuning_seeds():
    cfg = config.get_config("demo")
    assert tuple(cfg.tuning_seeds) == ()
    assert set(cfg.methods) == set(suite.PAPER_ROWS)
    with pytest.raises(ValueError, match="mode must be"):
        config.get_config("fast")


def test_main_writes_results_and_figures(quick_cache, tmp_path):
    """The entry point's work (results.json with provenance, Markdown, figures), from the cache
    that the end-to-end test filled."""
    from experiments.common import suite_cli
    from experiments.paper_toy import main

    out = tmp_path / "out"
    page = suite_cli.run(
        "paper_toy",
        config.get_config("quick"),
        suite.Suite,
        main.write_outputs,
        workdir=str(quick_cache / "cache"),
        out=str(out),
        command="python -m experiments.paper_toy --config=experiments/paper_toy/config.py:quick",
    )
    saved = json.loads((out / "results.json").read_text())
    assert saved["environment"]["command"].startswith("python -m experiments.paper_toy")
    for name in ("results.md", "tradeoff.png", "curves.png"):
        assert (out / name).stat().st_size > 0
    assert "Beside the paper (Table 1)" in page.read_text()
