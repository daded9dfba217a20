"""Tests of the 2D regression toy (experiments/toy2d)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from experiments.toy2d import main as toy_main
from experiments.toy2d import train
from experiments.toy2d.config import get_config
from experiments.toy2d.data import batch_indices, f_new, f_old, make_data
from experiments.toy2d.model import MLP

QUICK = get_config("quick")
ROOT = Path(__file__).resolve().parents[1]


def _arrays(d):
    return [
        s for task in (d.old, d.new) for split in (task.train, task.val, task.test) for s in split
    ]


def test_data_is_deterministic_per_seed_and_differs_across_seeds():
    a, b, c = make_data(QUICK.data, 0), make_data(QUICK.data, 0), make_data(QUICK.data, 1)
    for x, y in zip(_arrays(a), _arrays(b), strict=True):
        np.testing.assert_array_equal(x, y)
    for x, z in zip(_arrays(a), _arrays(c), strict=True):
        assert not np.allclose(x, z)


def test_data_shapes_targets_and_noise():
    cfg = QUICK.data
    d = make_data(cfg, 3)
    assert d.old.train.x.shape == (cfg.n_train_old, 2)
    assert d.old.train.y.shape == (cfg.n_train_old, 1)
    assert d.new.train.x.shape == (cfg.n_train_new, 2)
    assert d.new.test.x.shape == (cfg.n_test, 2) and d.new.val.y.shape == (cfg.n_val, 1)
    # Validation/test labels are noiseless function values; training labels are noisy.
    np.testing.assert_allclose(d.old.test.y[:, 0], f_old(d.old.test.x, cfg), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(d.new.val.y[:, 0], f_new(d.new.val.x, cfg), rtol=1e-5, atol=1e-6)
    resid = d.new.train.y[:, 0] - f_new(d.new.train.x, cfg)
    assert 0.5 * cfg.label_noise < resid.std() < 1.5 * cfg.label_noise
    # The two input clouds sit around their configured centres.
    np.testing.assert_allclose(d.old.train.x.mean(0), cfg.old_center, atol=0.15)
    np.testing.assert_allclose(d.new.train.x.mean(0), cfg.new_center, atol=0.15)


def test_batch_indices_are_seeded_reshuffled_epochs():
    idx = batch_indices(10, 4, 7, seed=0)
    assert idx.shape == (7, 4)
    np.testing.assert_array_equal(idx, batch_indices(10, 4, 7, seed=0))
    assert not np.array_equal(idx, batch_indices(10, 4, 7, seed=1))
    # Each epoch (2 batches of 4 out of 10, drop-last) has no repeated index.
    for e in range(3):
        epoch = idx[2 * e : 2 * e + 2].ravel()
        assert len(set(epoch.tolist())) == 8
    with pytest.raises(ValueError):
        batch_indices(3, 4, 1, seed=0)


def test_model_layer_names_match_the_mask_helpers():
    from profit_optax import masks

    params = train.init_params(MLP((8, 8)), 0)
    assert sorted(params) == ["Dense_0", "Dense_1", "head"]
    head = masks.head_mask(params)
    embed = masks.embedding_mask(params)
    assert all(jax.tree.leaves(head["head"])) and not any(jax.tree.leaves(head["Dense_0"]))
    assert all(jax.tree.leaves(embed["Dense_0"])) and not any(jax.tree.leaves(embed["head"]))


@pytest.mark.slow
def test_quick_run_end_to_end_writes_all_outputs(tmp_path):
    """The command line: the quick config, a ``--config.`` override, every output file."""
    from experiments import methods as registry

    out = tmp_path / "toy2d"
    cmd = [
        sys.executable, "-m", "experiments.toy2d", "--config=experiments/toy2d/config.py:quick",
        "--config.finetune.eval_every=30", f"--out={out}", "--noprogress",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, timeout=600)
    for name in [
        "results.json",
        "results.csv",
        "results.md",
        "functions.png",
        "slice.png",
        "tradeoff.png",
        "curves.png",
    ]:
        assert (out / name).stat().st_size > 0, name
    saved = json.loads((out / "results.json").read_text())
    assert saved["config"]["finetune"]["eval_every"] == saved["eval_every"] == 30
    assert saved["environment"]["command"] == " ".join(["python -m experiments.toy2d", *cmd[3:]])
    assert "mean ± standard error over seeds" in (out / "results.md").read_text()
    methods = set(saved["summary"]) - {"pretrained"}
    # Every configured method is run. (The registry's newer entries for the paper's
    # protocol, RMSProp, Adan and PROFIT with warm-up, run in experiments.paper_toy.)
    assert methods == set(QUICK.methods)
    assert methods <= set(registry.available_methods())
    # Same number of update calls for every method, a multiple of every period.
    steps = saved["finetune_steps"]
    params = train.init_params(MLP(QUICK.model.hidden), 0)
    for name in methods:
        method = registry.make_method(
            name, params, **toy_main._masks(params), **QUICK.methods[name].to_dict()
        )
        assert steps % method.period == 0
        assert [p["step"] for p in saved["curves"][name][0]][-2:] == [steps - 30, steps]
        assert len(saved["per_seed"][name]) == len(QUICK.seeds)
        for row in saved["per_seed"][name]:
            assert np.isfinite([row["old_test"], row["new_test"]]).all()
    assert saved["summary"]["pretrained"]["wall_time_s_mean"] == 0.0
    csv_lines = (out / "results.csv").read_text().strip().splitlines()
    assert len(csv_lines) == 1 + (len(methods) + 1) * len(QUICK.seeds)


def test_summary_and_table():
    rows = {
        "a": [
            {"old_test": 1.0, "new_test": 2.0, "wall_time_s": 3.0},
            {"old_test": 2.0, "new_test": 2.0, "wall_time_s": 1.0},
            {"old_test": 6.0, "new_test": 2.0, "wall_time_s": 2.0},
        ]
    }
    s = toy_main.summarize(rows)["a"]
    # standard error = sample std / sqrt(n) = sqrt(7) / sqrt(3) (population std: 2.160)
    assert s["old_test_mean"] == 3.0 and s["new_test_se"] == 0.0
    assert s["old_test_se"] == pytest.approx((7 / 3) ** 0.5)
    table = toy_main.format_table({"a": s}, markdown=True)
    assert "| a | 3.0000 ± 1.5275 | 2.0000 ± 0.0000 | 2.00 |" in table


def test_finetuning_follows_the_same_data_order_for_every_method():
    d = make_data(QUICK.data, 0)
    o1 = train.finetune_order(d, QUICK.finetune, 40, seed=0)
    o2 = train.finetune_order(d, QUICK.finetune, 40, seed=0)
    np.testing.assert_array_equal(o1, o2)
    assert o1.max() < QUICK.data.n_train_new


@pytest.mark.slow
def test_qualitative_ordering_on_a_fixed_seed(tmp_path):
    """Seed 0, default data/model/budget; adam = full fine-tuning.

    What this toy shows robustly (see docs/toy2d.md): full fine-tuning forgets (old error ≫ the
    pretrained model's); head-only fine-tuning fits the new data clearly worse; and, *at the
    same main learning rate*, PROFIT forgets less than full fine-tuning while still learning the
    new data (its new error is 2-6x full fine-tuning's on seeds 0-2, so no ratio is asserted).
    At the learning rate selected on validation data (3e-3) PROFIT is unstable and the paper's
    ordering does not hold on average, so it is not asserted here.
    """
    lr = 1e-4
    methods = {
        "adam": {"learning_rate": lr},
        "head_only": {"learning_rate": 3e-3},
        # automatic reference step at ref_scale 0.01, the default when docs/toy2d.md was
        # written. At today's default (3e-4) PROFIT trades a little old error for new error
        # here (seeds 0-2, old/new: 0.066/0.044 at 0.01, 0.091/0.036 at 3e-4; Adam
        # 0.205/0.015); on seed 0 its old error is then 0.61x Adam's, not < 0.6x.
        "profit": {"learning_rate": lr, "ref_scale": 0.01},
    }
    cfg = get_config()
    cfg.seeds = (0,)
    cfg.methods = methods
    res = toy_main.run(cfg, tmp_path, progress=False)
    old = {k: v["old_test_mean"] for k, v in res["summary"].items()}
    new = {k: v["new_test_mean"] for k, v in res["summary"].items()}
    assert old["adam"] > 10 * old["pretrained"], old
    assert old["profit"] < 0.6 * old["adam"], old
    assert new["profit"] < 0.5 * new["pretrained"], new
    assert new["head_only"] > 1.5 * new["adam"], new
