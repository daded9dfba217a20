"""The paper's CIFAR recipe on offline data: validation split and the quick suite end to end."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from experiments.common import protocol
from experiments.common import suite as framework
from experiments.common.cache import RunCache
from experiments.common.data import ArrayDataset, split_validation
from experiments.recipe import config, report, suite


def test_split_validation_is_disjoint_fixed_and_complete():
    images = np.arange(50, dtype=np.uint8).reshape(50, 1, 1, 1)
    ds = ArrayDataset(images, np.arange(50, dtype=np.int32) % 5, tuple("abcde"))
    train, val = split_validation(ds, 10)
    assert (len(train), len(val)) == (40, 10)
    ids = np.concatenate([train.images.ravel(), val.images.ravel()])
    assert sorted(ids.tolist()) == list(range(50))
    _, again_val = split_validation(ds, 10)
    np.testing.assert_array_equal(again_val.images, val.images)
    assert not np.array_equal(split_validation(ds, 10, seed=1)[1].images, val.images)
    with pytest.raises(ValueError, match="held-out size must be in"):
        split_validation(ds, 50)


def test_budget_is_a_multiple_of_every_period():
    for mode in ("mlp", "vit"):
        cfg = config.get_config(mode)
        ft = cfg.finetune
        every = ft.budget // ft.curve_points
        for n_ref in cfg.ablation.n_refs:
            assert ft.budget % (n_ref + 1) == 0 and every % (n_ref + 1) == 0
        assert set(config.CLASS_SPLIT_METHODS) == set(cfg.methods)
    from experiments import methods as registry

    # Every registry method but the language model's PROFIT(AdamW) variants (issue 30), added
    # after these suites ran.
    every = set(registry.available_methods()) - {"profit_adamw", "profit_adamw_warmup"}
    for mode in ("shift_rotate", "shift_noise", "maintenance"):  # every registry method
        assert set(config.get_config(mode).methods) == every


def test_vit_same_label_suites_are_the_mlp_tasks_with_the_papers_methods_and_our_best_two():
    mode_fields = {"name", "mode", "model", "methods", "seeds", "tuning_seeds", "max_grid_widening"}

    def protocol_fields(c):
        return {k: v for k, v in c.to_dict().items() if k not in mode_fields}

    for task, ours in config.VIT_SAME_LABEL_OURS.items():
        vit, mlp = config.get_config(f"vit_{task}"), config.get_config(task)
        assert set(vit.methods) == set(config.PAPER_METHODS) | set(ours)
        assert vit.methods.to_dict() == {k: mlp.methods[k].to_dict() for k in vit.methods}
        assert vit.model.kind == "vit" and len(vit.seeds) >= 3 and vit.name.startswith("ViT")
        assert vit.finetune.budget == 2 * mlp.finetune.budget  # the ViT's plateau needs longer
        vit.finetune.budget = mlp.finetune.budget
        assert protocol_fields(vit) == protocol_fields(mlp)  # same data, task, rules
        assert vit.model.to_dict() == config.get_config("vit").model.to_dict()


def test_quick_suite_end_to_end_on_mock_data(tmp_path):
    cfg = config.get_config("quick")
    cfg.num_val = 8
    cfg.old_task.max_train_examples = None
    cfg.new_task.max_train_examples = None
    with tfds.testing.mock_data(num_examples=120):
        runner = protocol.Runner(RunCache(tmp_path))
        res = framework.run(suite.Suite(cfg, runner))
        assert runner.ran > 0
        resumed = protocol.Runner(RunCache(tmp_path))
        again = framework.run(suite.Suite(cfg, resumed))
    assert resumed.ran == 0 and again["rows"] == res["rows"]
    assert set(res["selection"]) == set(cfg.methods)
    assert res["best_baseline"] in {"adam", "head_only"}
    assert {"ablation:ratio=10", "ablation:n_ref=1", "ablation:n_ref=2"} <= set(res["rows"])
    assert set(res["comparisons"]) == {"profit"}
    hist = res["pretrained"]["history"]
    assert [h["step"] for h in hist] == [30, 60]  # the convergence curve, on validation
    for row in res["rows"].values():
        assert len(row["runs"]) == len(cfg.seeds)
        assert {"old", "new"} <= set(row["runs"][0]["test"])
    res = json.loads(json.dumps(res))
    tables = report.blocks(res, "recipe_quick")
    assert set(tables) == {
        f"recipe_quick_{k}" for k in ("table2", "tuned", "ratio", "n_ref", "vs_best")
    }
    paths = report.plot(res, tmp_path)
    assert all(p.stat().st_size > 0 for p in paths)


def test_same_label_quick_suite_keeps_the_head_and_shifts_only_the_new_part(tmp_path):
    cfg = config.get_config("quick_shift")
    cfg.num_val = 8
    cfg.old_task.max_train_examples = None
    cfg.new_task.max_train_examples = None
    cfg.task.severity = 30.0
    cfg.main_steps_rows = ("profit",)
    with tfds.testing.mock_data(num_examples=120):
        s = suite.Suite(cfg, protocol.Runner(RunCache(tmp_path)))
        res = framework.run(s)
        d = s.data
        # One head for both: no new head, the pretrained model is the starting point.
        assert s.start_params is s.pretrained
        assert d["old_test"].num_classes == d["new_test"].num_classes == 10
        # The new part's images are shifted, the old part's and the old test set are not.
        assert not np.array_equal(d["new_test"].images, d["old_test"].images)
        np.testing.assert_array_equal(d["new_test"].labels, d["old_test"].labels)
    start = res["pretrained"]["start"]
    assert {"val", "test"} == set(start) and {"old", "new"} == set(start["test"])
    # The equal-main-steps row: PROFIT with twice the gradient evaluations.
    main = res["rows"]["profit@main"]
    assert main["runs"][0]["calls"] == main["calls"] == 2 * cfg.finetune.budget
    assert main["budget"] == "main" and res["rows"]["profit"]["budget"] == "grads"
    assert "profit@main" in res["comparisons"]
    # PROFIT's diagnostics are logged along training.
    curve = res["rows"]["profit"]["runs"][0]["curve"]
    assert {"train_conflict", "train_cos_g_delta", "train_removed_frac"} <= set(curve[-1])
    assert 0.0 <= curve[-1]["train_conflict"] <= 1.0


def test_both_models_build():
    for mode in ("mlp", "vit"):
        assert suite.build_model(config.get_config(mode).model, 5) is not None


def _maintenance_result():
    def runs(values):
        return [{"seed": i, "test": {"old": v, "new": v}} for i, v in enumerate(values)]

    rows = {
        "adam": {"method": "adam", "runs": runs([0.870, 0.872, 0.871])},
        "sgd": {"method": "sgd", "runs": runs([0.860, 0.861, 0.862])},
        "profit": {"method": "profit", "runs": runs([0.870, 0.873, 0.870])},
        "profit@main": {"method": "profit", "runs": runs([0.880, 0.881, 0.883])},
        "ablation:n_ref=2": {"method": "profit", "runs": runs([0.1, 0.1, 0.1])},
    }
    return {
        "rows": rows,
        "config": {"task": {"kind": "maintenance"}},
        "metric": suite.METRIC.to_json(),
    }


def test_maintenance_compares_every_method_with_continued_adam_at_both_budgets():
    res = _maintenance_result()
    table = report.continued_table(res)
    lines = table.splitlines()
    assert lines[0] == "| method | minus continued `adam` (pts) |"  # no adamw in this suite
    assert [line.split(" | ")[0] for line in lines[2:5]] == [
        "| `sgd`",
        "| `profit`",
        "| `profit@main`",
    ]
    assert "ablation" not in table and "| `adam`" not in table
    assert lines[2].endswith("-1.00 [-1.25, -0.75] worse |")
    assert lines[3].endswith("no different |")
    assert lines[4].endswith("better |")
    assert table.endswith(
        "At equal gradient evaluations, 0 of 2 beat continued `adam`. "
        "At equal main steps, 1 of 1 beat continued `adam` (`profit@main`)."
    )


def test_committed_maintenance_suites_answer_the_continued_training_question():
    from experiments import report as readme_report

    for mode in ("maintenance", "vit_maintenance", "shift_rotate"):
        res = json.loads((readme_report.RESULTS / f"recipe_{mode}" / "results.json").read_text())
        tables = report.blocks(res, mode)
        assert (f"{mode}_vs_continued" in tables) == mode.endswith("maintenance")
        assert (
            "Before fine-tuning, the pretrained model's test accuracy" in tables[f"{mode}_vs_best"]
        )
