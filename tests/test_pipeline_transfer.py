"""The generic train loop and the pretrain -> checkpoint -> fine-tune -> report pipeline."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds

from experiments import methods as registry
from experiments.common import checkpoint, results, transfer
from experiments.common.train import Trainer, train
from experiments.vit.configs import cifar10_to_cifar100_vit_tiny
from experiments.vit.main import build_model


def regression_problem():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 3)).astype(np.float32)
    y = x @ np.array([1.0, -2.0, 0.5], np.float32)

    def batches(seed):
        r = np.random.default_rng(seed)
        while True:
            idx = r.choice(256, 32, replace=False)
            yield {"x": x[idx], "y": y[idx]}

    def loss_fn(params, batch, rng):
        err = batch["x"] @ params["w"] - batch["y"]
        return jnp.mean(err**2), {}

    return batches, loss_fn


def test_trainer_uses_grad_and_eval_params_and_checks_periods():
    batches, loss_fn = regression_problem()
    params = {"w": jnp.zeros(3)}
    method = registry.make_method("lookahead", params, learning_rate=0.05)
    assert method.period == 6
    trainer = Trainer(method, loss_fn)
    evals = []

    def eval_fn(p):
        evals.append(p)
        return {"w0": float(p["w"][0])}

    result = trainer.fit(
        params,
        batches(0),
        240,
        rng=jax.random.key(0),
        eval_fn=eval_fn,
        eval_every=120,
        eval_at_start=True,
    )
    assert [h["step"] for h in result.history] == [0, 120, 240]
    assert result.history[-1]["train_loss"] < result.history[1]["train_loss"]
    np.testing.assert_allclose(result.eval_params["w"], [1.0, -2.0, 0.5], atol=0.05)
    # Stored = LookaheadParams; what was evaluated is the slow copy.
    assert isinstance(result.stored, optax.LookaheadParams)
    np.testing.assert_array_equal(evals[-1]["w"], result.stored.slow["w"])
    assert result.compile_time_s > 0
    np.testing.assert_array_equal(params["w"], jnp.zeros(3))  # input not modified

    again = trainer.fit(params, batches(0), 240, rng=jax.random.key(0))
    assert again.compile_time_s == 0.0  # compiled once per trainer
    np.testing.assert_array_equal(again.eval_params["w"], result.eval_params["w"])

    with pytest.raises(ValueError, match="multiple of the period 6"):
        trainer.fit(params, batches(0), 10, rng=jax.random.key(0))
    with pytest.raises(ValueError, match="eval_every=4"):
        trainer.fit(params, batches(0), 12, rng=jax.random.key(0), eval_every=4)


def test_train_function_with_a_plain_optax_method():
    batches, loss_fn = regression_problem()
    result = train(
        registry.plain_method("adam", optax.adam(0.05)),
        {"w": jnp.zeros(3)},
        loss_fn,
        batches(1),
        200,
        rng=jax.random.key(0),
    )
    np.testing.assert_allclose(result.eval_params["w"], [1.0, -2.0, 0.5], atol=0.05)


def test_checkpoint_roundtrip(tmp_path):
    tree = {"a": {"kernel": jnp.arange(6.0).reshape(2, 3)}, "b": jnp.ones(4, jnp.int32)}
    path = checkpoint.save_pytree(tmp_path / "ckpt", tree)
    assert path.is_absolute() and path.exists()
    restored = checkpoint.restore_pytree(tmp_path / "ckpt", tree)
    jax.tree.map(np.testing.assert_array_equal, restored, tree)
    assert restored["b"].dtype == jnp.int32


def test_results_aggregate_and_table(tmp_path):
    records = [
        {"label": "a", "method": "adam", "acc": 0.5},
        {"label": "b", "method": "sgd", "acc": 0.1},
        {"label": "a", "method": "adam", "acc": 0.7},
    ]
    rows = results.aggregate(records, group_by="label", metrics=["acc"], keep=["method"])
    assert [r["label"] for r in rows] == ["a", "b"]
    assert rows[0]["n"] == 2 and rows[0]["method"] == "adam"
    assert rows[0]["acc_mean"] == pytest.approx(0.6)
    assert rows[0]["acc_se"] == pytest.approx(np.std([0.5, 0.7], ddof=1) / np.sqrt(2))
    assert rows[1]["acc_se"] == 0.0
    paths = results.write_table(
        rows, tmp_path / "t", columns=[("acc", "acc (%)", 100.0, 1)], label_key="label"
    )
    md = paths["md"].read_text()
    assert "| a | 2 | 60.0 ± 10.0 |" in md  # standard error: 14.1 / sqrt(2)
    assert paths["csv"].read_text().splitlines()[0] == "method,n,acc_mean,acc_se"
    assert json.loads(paths["json"].read_text())[1]["acc_mean"] == pytest.approx(0.1)


def test_resolve_config_and_method_selection():
    config = cifar10_to_cifar100_vit_tiny.get_config()
    assert transfer.resolve_config(config).model.variant == "Ti"
    config.quick = True
    quick = transfer.resolve_config(config)
    assert quick.model.variant == "mini" and quick.finetune.num_steps == 12
    assert config.finetune.num_steps == 3840  # the input is not modified
    config.finetune.only = "profit, adam"
    assert list(transfer.selected_methods(config)) == ["profit", "adam"]
    assert transfer.selected_methods(config)["adam"]["method"] == "adam"
    config.finetune.only = "nope"
    with pytest.raises(ValueError, match="unknown labels"):
        transfer.selected_methods(config)


def quick_config():
    config = cifar10_to_cifar100_vit_tiny.get_config()
    config.quick = True
    config.model.patch_size = 8  # 16 tokens: fast on CPU
    config.finetune.only = "adam,profit"
    return config


@pytest.mark.slow
def test_end_to_end_on_mock_data(tmp_path):
    config = quick_config()
    with tfds.testing.mock_data(num_examples=100):
        rows = transfer.run_transfer(config, build_model, tmp_path, progress=False)
    assert [r["label"] for r in rows] == ["adam", "profit"]
    for row in rows:
        assert row["n"] == 2
        assert 0.0 <= row["old_acc_mean"] <= 1.0 and 0.0 <= row["new_acc_mean"] <= 1.0
    # Checkpoint, per-run metrics, table and plots are written.
    assert (tmp_path / "pretrain" / "checkpoint").is_dir()
    pre = results.read_json(tmp_path / "pretrain" / "pretrain.json")
    assert [h["step"] for h in pre["history"]] == [10, 20]
    run = results.read_json(tmp_path / "finetune" / "adam" / "seed_1.json")
    assert run["num_steps"] == 12 and [h["step"] for h in run["history"]] == [0, 6, 12]
    assert run["history"][0]["old_acc"] == pytest.approx(pre["old_acc"])  # starts at pretrained
    table = (tmp_path / "results.md").read_text()
    assert "pretrained (no fine-tuning)" in table and "| adam | 2 |" in table
    assert (tmp_path / "results.csv").read_text().count("\n") == 4
    for png in ("old_vs_new.png", "learning_curves.png", "pretrain_curve.png"):
        assert (tmp_path / "plots" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    profit = results.read_json(tmp_path / "finetune" / "profit" / "seed_0.json")
    assert profit["period"] == 2 and profit["hparams"]["n_ref"] == 1
    # Rerunning reuses the checkpoint and every finished run.
    mtime = (tmp_path / "finetune" / "profit" / "seed_0.json").stat().st_mtime
    with tfds.testing.mock_data(num_examples=100):
        rows_again = transfer.run_transfer(config, build_model, tmp_path, progress=False)
    assert rows_again == rows
    assert (tmp_path / "finetune" / "profit" / "seed_0.json").stat().st_mtime == mtime

    # A checkpoint made with other pretraining settings is never silently reused.
    config.pretrain.learning_rate = 0.5
    with tfds.testing.mock_data(num_examples=100), pytest.raises(ValueError, match="fingerprint"):
        transfer.run_transfer(config, build_model, tmp_path, progress=False)
