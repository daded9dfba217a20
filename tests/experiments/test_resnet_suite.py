"""The ResNet suites (experiments/resnet): configs, the quick suite end to end on mock data
with PROFIT's batch-statistics arms, and the training loop's handling of the statistics."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds
from flax import nnx

from experiments import methods as registry
from experiments.common import protocol
from experiments.common import suite as framework
from experiments.common.cache import RunCache
from experiments.common.train import ModelState, Trainer, stack_batches
from experiments.recipe import config as recipe_config
from experiments.recipe import report
from experiments.resnet import config
from experiments.resnet import suite as resnet_suite
from experiments.resnet.model import resnet
from profit_optax import at_probe_point


def test_configs_are_the_recipe_tasks_with_the_resnet_and_the_fixed_methods():
    split = config.get_config("class_split")
    assert set(split.methods) == {
        *recipe_config.PAPER_METHODS,
        "profit_warmup",
        *config.CLASS_SPLIT_OURS,
    }
    assert split.finetune.budget == 2106 and split.task.kind == "class_split"
    assert split.model.to_dict() == {"kind": "resnet", "variant": "mini"}
    assert tuple(split.batch_stats.arms) == ("at_model", "one_call")
    for task, ours in recipe_config.VIT_SAME_LABEL_OURS.items():
        if task == "maintenance":
            continue
        c, vit = config.get_config(task), recipe_config.get_config(f"vit_{task}")
        assert set(c.methods) == {*recipe_config.PAPER_METHODS, *ours}
        assert c.task.to_dict() == vit.task.to_dict() and c.finetune.budget == 2112
        assert bool(c.batch_stats.arms) == (task in config.BATCH_STATS_TASKS)
    for mode in ("class_split", "shift_rotate", "shift_noise"):
        c = config.get_config(mode)
        assert (tuple(c.seeds), tuple(c.tuning_seeds)) == ((0, 1, 2), (100,))
        every = c.finetune.budget // c.finetune.curve_points
        for n_ref in c.n_ref_grid:
            assert c.finetune.budget % (n_ref + 1) == 0 and every % (n_ref + 1) == 0
    with pytest.raises(ValueError, match="mode must be one of"):
        config.get_config("vit")


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    cfg = config.get_config("quick")
    cfg.num_val = 8
    cfg.old_task.max_train_examples = None
    cfg.new_task.max_train_examples = None
    tmp = tmp_path_factory.mktemp("resnet_quick")
    with tfds.testing.mock_data(num_examples=120):
        runner = protocol.Runner(RunCache(tmp))
        s = resnet_suite.Suite(cfg, runner)
        res = framework.run(s)
        resumed = protocol.Runner(RunCache(tmp))
        again = framework.run(resnet_suite.Suite(cfg, resumed))
    return cfg, s, runner, res, resumed, again, tmp


def test_quick_suite_end_to_end_and_resumable(quick):
    cfg, s, runner, res, resumed, again, _ = quick
    assert runner.ran > 0 and resumed.ran == 0 and again["rows"] == res["rows"]
    assert set(res["selection"]) == set(cfg.methods) and res["best_baseline"] == "adam"
    hist = res["pretrained"]["history"]
    assert [h["step"] for h in hist] == [30, 60]  # the convergence curve, on validation
    arms = {"ablation:batch_stats=at_model", "ablation:batch_stats=one_call"}
    assert set(res["rows"]) == {"adam", "profit", "profit@main", *arms}
    assert set(res["comparisons"]) == {"profit", "profit@main", *arms}
    for row in res["rows"].values():
        assert len(row["runs"]) == len(cfg.seeds)
        assert {"old", "new"} <= set(row["runs"][0]["test"])
        assert row["runs"][0]["curve"][-1]["step"] == row["calls"]  # in gradient evaluations
    profit = res["selection"]["profit"]["hparams"]
    for arm in arms:
        row = res["rows"][arm]
        mode = arm.split("=")[1]
        assert row["hparams"] == {**profit, "batch_stats": mode} and row["base"] == "profit"
        assert row["calls"] == cfg.finetune.budget and row["budget"] == "grads"
    one = res["rows"]["ablation:batch_stats=one_call"]["runs"][0]
    assert one["grads_per_call"] == profit.get("n_ref", 1) + 1 and one["period"] == 1
    # the mode is part of the cache key: the every_call row's key has none
    keys = {k: s.job("profit", r["hparams"], 0, "test", r["calls"]) for k, r in res["rows"].items()}
    assert "batch_stats" not in keys["profit"]["hparams"]
    assert len({json.dumps(keys[k], sort_keys=True) for k in ("profit", *arms)}) == 3
    # PROFIT's diagnostics along training, in every arm
    for arm in ("profit", *arms):
        assert "train_conflict" in res["rows"][arm]["runs"][0]["curve"][-1]


def test_quick_suite_reports_the_batch_statistics_arms(quick, tmp_path):
    res = json.loads(json.dumps(quick[3]))
    blocks = report.blocks(res, "resnet_quick")
    assert set(blocks) == {
        f"resnet_quick_{k}" for k in ("table2", "tuned", "batch_stats", "vs_best")
    }
    table = blocks["resnet_quick_batch_stats"]
    for text in ("`every_call`", "`at_model`", "`one_call`", "`one_call` − `at_model`"):
        assert text in table
    assert "## PROFIT and batch-norm statistics" in report.page(res, "resnet_quick")
    assert all(p.stat().st_size > 0 for p in report.plot(res, tmp_path))


def test_evaluation_uses_the_running_statistics(quick):
    s = quick[1]
    w = s.start_params
    x = np.random.default_rng(0).integers(0, 256, (6, 28, 28, 1)).astype(np.uint8)
    apply = s.apply_fn(1)
    np.testing.assert_allclose(apply(w, x[:3]), apply(w, x)[:3], rtol=1e-5, atol=1e-5)
    forward = jax.jit(s.forward, static_argnums=0, static_argnames="train")
    _, moved = forward(1, w["params"], w["batch_stats"], x, train=True)
    _, same = forward(1, w["params"], w["batch_stats"], x, train=False)
    assert jax.tree.all(jax.tree.map(np.array_equal, same, w["batch_stats"]))
    assert not jax.tree.all(jax.tree.map(np.array_equal, moved, w["batch_stats"]))


def _stateful_problem():
    model = resnet("tiny", 5, rngs=nnx.Rngs(0))
    graph, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)

    def loss_fn(p, batch, rng, s, train=True):
        del rng
        m = nnx.merge(graph, p, s)
        if not train:
            m.eval()
        logits = m(batch["image"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        return loss, ({}, nnx.to_pure_dict(nnx.state(m, nnx.BatchStat)))

    def batches():
        rng = np.random.default_rng(0)
        while True:
            yield {
                "image": rng.normal(size=(8, 28, 28, 1)).astype(np.float32),
                "label": rng.integers(0, 5, 8).astype(np.int32),
            }

    return loss_fn, nnx.to_pure_dict(params), nnx.to_pure_dict(stats), batches


@pytest.mark.parametrize("mode", ["every_call", "at_model"])
def test_trainer_moves_the_statistics_where_the_mode_says(mode):
    """One PROFIT cycle through the Trainer: the call at the model moves the statistics;
    the main call, at the probe point, moves them too unless ``keep_if`` says not."""
    loss_fn, params, stats, batches = _stateful_problem()
    method = registry.make_method("profit", params, learning_rate=1e-2, ref_ratio=10.0)
    keep = at_probe_point if mode == "at_model" else None
    trainer = Trainer(method, loss_fn, model_state=ModelState(keep_if=keep))
    one = trainer.fit(params, batches(), 2, rng=jax.random.key(0), state=stats, eval_every=0)
    first = jax.tree.map(np.asarray, one.model_state)
    # the first call alone, from a trainer of period 1 with the same first batch
    plain = registry.plain_method("sgd", optax.sgd(0.0))
    at_model = Trainer(plain, loss_fn, model_state=ModelState()).fit(
        params, batches(), 1, rng=jax.random.key(0), state=stats
    )
    same = jax.tree.leaves(jax.tree.map(np.array_equal, first, at_model.model_state))
    assert all(same) if mode == "at_model" else not any(same)
    assert not any(jax.tree.leaves(jax.tree.map(np.array_equal, first, stats)))


def test_one_call_trainer_takes_stacked_batches_and_probes_on_the_running_statistics():
    loss_fn, params, stats, batches = _stateful_problem()
    method = registry.make_method("profit", params, learning_rate=1e-2, one_call=True)
    assert (method.period, method.grads_per_call, method.grads_per_step) == (1, 2, 2)
    with pytest.raises(ValueError, match="needs a ModelState"):
        Trainer(method, lambda p, b, r: (0.0, {}))
    probe = lambda p, b, r, s: loss_fn(p, b, r, s, train=False)
    trainer = Trainer(method, loss_fn, model_state=ModelState(probe_loss_fn=probe))
    res = trainer.fit(params, stack_batches(batches(), 2), 3, rng=jax.random.key(0), state=stats)
    assert np.isfinite(res.history[-1]["train_loss"]) and res.history[-1]["step"] == 3
    # one call moves the statistics once: by the forward pass at the model on its first batch
    one = trainer.fit(params, stack_batches(batches(), 2), 1, rng=jax.random.key(0), state=stats)
    first = jax.tree.map(lambda x: jnp.asarray(x[0]), next(stack_batches(batches(), 2)))
    expected = loss_fn(params, first, None, stats)[1][1]
    close = jax.tree.map(
        lambda a, b: np.allclose(a, b, rtol=1e-5, atol=1e-6), one.model_state, expected
    )
    assert all(jax.tree.leaves(close))


def test_verdict_has_resnet_rows_once_a_results_file_exists(quick, tmp_path):
    """The ResNet suites are in the verdict; a suite without its results.json yet (a run
    in progress) has no rows and no blocks."""
    from experiments import report as docs_report
    from experiments import verdict

    folders = [f for f, *_ in verdict.SUITES if f.startswith("resnet_")]
    assert folders == ["resnet_class_split", "resnet_shift_rotate", "resnet_shift_noise"]
    assert verdict.rows(tmp_path) == []
    assert not any(k.startswith("resnet_") for k in docs_report.render_all(tmp_path))
    (tmp_path / "resnet_class_split").mkdir()
    res = {"environment": {}, **quick[3]}
    (tmp_path / "resnet_class_split" / "results.json").write_text(json.dumps(res))
    rows = verdict.rows(tmp_path)
    assert {r["model"] for r in rows} == {"ResNet-mini"}
    assert {r["task"] for r in rows} == {
        "class split 0-4 → 5-9",
        "class split 0-4 → 5-9 (equal main steps)",
    }
    assert {r["profit"] for r in rows} == {"profit", "profit@main"}  # never an arm
    assert "resnet_class_split_batch_stats" in docs_report.render_all(tmp_path)
