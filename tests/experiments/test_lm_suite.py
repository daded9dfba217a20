"""The language-model suites (experiments.lm): configs, data windows, LoRA wiring, resumable
pretraining and the quick suite end to end.

The tests that read the corpora skip, with the packages to install, when Debian's
sword-text-web / sword-text-kjv are absent.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from flax import nnx

import profit_optax
from experiments.common import protocol, suite_cli
from experiments.common import suite as framework
from experiments.common.cache import RunCache
from experiments.data import text as T
from experiments.lm import config, main, pilot
from experiments.lm import model as M
from experiments.lm import suite as lm_suite
from tests.experiments._corpora import needs_bibles


def _suite(mode: str, cache, **overrides) -> lm_suite.Suite:
    cfg = config.get_config(mode)
    for key, value in overrides.items():
        cfg[key] = value
    return lm_suite.Suite(cfg, protocol.Runner(RunCache(cache)))


# --- configs ----------------------------------------------------------------------------


def test_every_suite_budget_and_curve_interval_fit_every_period():
    """Budgets and evaluation intervals are multiples of n_ref + 1 for n_ref in {1, 2, 5}
    (and twice the budget, the equal-main-steps rows, too)."""
    for mode in config.MODES:
        cfg = config.get_config(mode)
        ft = cfg.finetune
        for calls in (ft.budget, 2 * ft.budget):
            every = calls // ft.curve_points
            assert every * ft.curve_points == calls, mode
            for n_ref in (1, *cfg.n_ref_grid):
                assert calls % (n_ref + 1) == 0 and every % (n_ref + 1) == 0, (mode, n_ref)


def test_suite_modes_have_the_issues_methods_and_protocol():
    base = {"adamw", "adam", "sgd", "lookahead", "adan", "l2sp", "profit"}
    for mode in config.SUITE_MODES:
        cfg = config.get_config(mode)
        want = base | ({"profit_warmup"} if mode.startswith("domain") else set())
        assert set(cfg.methods) == want, mode
        assert cfg.methods.profit.method == "profit_adamw"
        assert cfg.methods.profit.grid.ref_ratio == (10.0, 100.0, 1000.0, 10000.0, None)
        assert cfg.methods.lookahead.fixed.to_dict() == {"sync_period": 1, "slow_step_size": 0.5}
        assert tuple(cfg.n_ref_grid) == (1, 2, 5)
        assert len(cfg.seeds) >= 3 and not set(cfg.seeds) & set(cfg.tuning_seeds)
        assert cfg.finetune.lora_rank == (8 if mode.endswith("lora") else None)
        # The paper's DriveLM point: PROFIT at 10x AdamW's learning rate is inside the grids.
        lrs = cfg.methods.adamw.grid.learning_rate
        assert any(10 * lr in cfg.methods.profit.grid.learning_rate for lr in lrs)
    with pytest.raises(ValueError, match="mode must be one of"):
        config.get_config("style")


def test_tasks_share_their_pretraining_with_the_pilot(tmp_path):
    """The WEB pretraining job is the same for the style and domain suites (both modes) and
    the pilot; the maintenance suites pretrain on the old half (fewer steps)."""
    key = lambda s: json.dumps(s.pretrain_config(), sort_keys=True)
    web = {key(_suite(f"{t}_{m}", tmp_path)) for t in ("style", "domain") for m in ("full", "lora")}
    old = {key(_suite(f"maintenance_{m}", tmp_path)) for m in ("full", "lora")}
    assert len(web) == 1 and len(old) == 1 and web != old
    runner = protocol.Runner(RunCache(tmp_path))
    cfg = config.get_config("pilot")
    pilots = {t: lm_suite.Suite(pilot.task_config(cfg, t), runner) for t in config.TASKS}
    assert key(pilots["style"]) in web and key(pilots["domain"]) in web
    assert key(pilots["maintenance"]) in old
    assert pilots["domain"].cfg.task.new == "pydocs"
    assert cfg.finetune.budget == 600 and cfg.finetune.budget // cfg.finetune.curve_points == 50


# --- data -------------------------------------------------------------------------------


@needs_bibles
def test_data_windows_are_deterministic(tmp_path):
    """Evaluation windows are fixed (two suites build the same), training windows are a
    function of the seed and the call (a resumed or repeated run sees the same batches)."""
    a, b = _suite("quick", tmp_path), _suite("quick", tmp_path / "other")
    assert set(a.eval_sets) == {"old_val", "old_test", "new_val", "new_test"}
    for k, w in a.eval_sets.items():
        np.testing.assert_array_equal(w, b.eval_sets[k])
        assert w.dtype == np.uint8 and w.shape[1] == a.lm_config.context + 1
    assert not np.array_equal(a.eval_sets["old_val"], a.eval_sets["new_val"])  # WEB vs KJV
    ctx, batch = a.lm_config.context, a.cfg.finetune.batch_size
    new_train = a.corpus("kjv", "train")
    assert new_train.size == a.cfg.data.max_train_bytes
    draw = lambda seed, step: T.WindowSampler(new_train, ctx, batch, seed)(step)
    np.testing.assert_array_equal(draw(0, 5), draw(0, 5))
    assert not np.array_equal(draw(0, 5), draw(1, 5))
    first = next(lm_suite._windows_batch(T.WindowSampler(new_train, ctx, batch, 0), 5))
    np.testing.assert_array_equal(first["windows"], draw(0, 5))


# --- LoRA -------------------------------------------------------------------------------


@needs_bibles
def test_lora_trains_the_adapters_only_and_profit_keeps_theta_ref_of_them(tmp_path):
    s = _suite("quick_lora", tmp_path)
    start = s.start
    lora_count = M.param_count(start.model(start.params), nnx.LoRAParam)
    n = sum(x.size for x in jax.tree.leaves(start.params))
    assert n == lora_count > 0
    hp = {"learning_rate": 1e-2, "ref_ratio": 100.0}
    trainer = s.trainer("profit", hp, 4)
    res = trainer.fit(
        start.params,
        lm_suite._windows_batch(T.WindowSampler(s.corpus("kjv", "train"), 32, 4, 0), 0),
        4,
        rng=jax.random.key(0),
        progress=False,
    )
    theta_ref = res.opt_state.theta_ref  # ProfitState's buffer
    assert jax.tree.structure(theta_ref) == jax.tree.structure(start.params)
    assert sum(x.size for x in jax.tree.leaves(theta_ref)) == lora_count
    tuned = start.model(res.eval_params)
    base = nnx.to_pure_dict(nnx.state(tuned, nnx.All(nnx.Param, nnx.Not(nnx.LoRAParam))))
    for got, want in zip(jax.tree.leaves(base), jax.tree.leaves(s.pretrained), strict=True):
        np.testing.assert_array_equal(got, want)  # the base weights never move
    adapters = nnx.to_pure_dict(nnx.state(tuned, nnx.LoRAParam))
    moved = [
        not np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(adapters), jax.tree.leaves(start.params), strict=True)
    ]
    assert all(moved)
    memory = s.memory(trainer.method)
    assert memory["trainable_params"] == lora_count
    # PROFIT(AdamW): AdamW's two moments + θ_ref, fp32, over the adapters only.
    assert memory["extra_bytes"] == pytest.approx(12 * lora_count, abs=64)


def test_nnx_optimizer_over_lora_params_keeps_theta_ref_of_the_adapters_only():
    """The user's path (issue 30): ``nnx.Optimizer(model, profit(adamw), wrt=nnx.LoRAParam)``."""
    import optax

    model = M.with_lora(M.make_model(M.LMConfig.named("tiny")), 4)
    tx = profit_optax.profit(optax.adamw(1e-3), optax.sgd(1e-5))
    opt = nnx.Optimizer(model, tx, wrt=nnx.LoRAParam)
    theta_ref = opt.opt_state.theta_ref  # ProfitState's buffer, in nnx.OptState variables
    count = sum(np.size(x) for x in jax.tree.leaves(theta_ref))
    assert count == M.param_count(model, nnx.LoRAParam) < M.base_param_count(model) / 4


# --- pretraining and the suite end to end -------------------------------------------------


@needs_bibles
def test_a_stopped_pretraining_resumes_from_its_checkpoint(tmp_path):
    class Stop(Exception):
        pass

    stopped = _suite("quick", tmp_path / "a")
    save = stopped._save_checkpoint

    def save_then_stop(*args):
        save(*args)
        raise Stop

    stopped._save_checkpoint = save_then_stop  # killed right after the first checkpoint
    with pytest.raises(Stop):
        stopped.pretrain()
    assert stopped._path(".ckpt.msgpack").exists()
    resumed = _suite("quick", tmp_path / "a").pretrain()
    assert resumed["resumed_from"] == 10
    assert not stopped._path(".ckpt.msgpack").exists()
    straight = _suite("quick", tmp_path / "b").pretrain()
    assert [h["step"] for h in resumed["history"]] == [0, 10, 20]
    assert [h["step"] for h in straight["history"]] == [0, 10, 20]
    for key in ("val_bpb", "test_bpb"):  # the same computation, resumed: the same numbers
        assert resumed[key] == straight[key]
    assert resumed["history"] == straight["history"]


@needs_bibles
def test_quick_suite_end_to_end(tmp_path):
    page = suite_cli.run(
        "lm",
        config.get_config("quick"),
        lm_suite.Suite,
        main.write_outputs,
        workdir=str(tmp_path / "cache"),
        out=str(tmp_path / "out"),
        protocol_fn=main.run,
    )
    assert page is not None and "Optimizer memory" in page.read_text()
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    assert res["metric"]["name"] == "bits per byte" and res["metric"]["lower_is_better"]
    assert set(res["rows"]) == {"adamw", "profit", "profit@main"}
    assert res["best_baseline"] == "adamw"
    assert res["selection"]["profit"]["scores"][-1]["hparams"].get("n_ref") == 2  # 2nd stage
    assert res["rows"]["profit@main"]["calls"] == 2 * res["rows"]["profit"]["calls"]
    run = res["rows"]["profit"]["runs"][0]
    assert {"train_conflict", "train_cos_g_delta", "train_removed_frac"} <= set(run["curve"][-1])
    assert [p["step"] for p in run["curve"]] == [0, 6, 12]
    assert set(run["test"]) == {"old", "new"} and all(np.isfinite(list(run["test"].values())))
    assert run["memory"]["extra_bytes"] > res["rows"]["adamw"]["runs"][0]["memory"]["extra_bytes"]
    assert res["pretrained"]["history"][-1]["step"] == 20
    assert set(res["pretrained"]["start"]) == {"val", "test"}
    for fig in ("tradeoff.png", "curves.png", "diagnostics.png", "pretrain.png"):
        assert (tmp_path / "out" / fig).exists()
    # Everything is cached: running again runs nothing.
    runner = protocol.Runner(RunCache(tmp_path / "cache"))
    again = framework.run(lm_suite.Suite(config.get_config("quick"), runner))
    assert runner.ran == 0 and again["best_baseline"] == res["best_baseline"]

    # The verdict and the report read it as one of the six suites; the others, without a
    # results file yet, are left out.
    from experiments import report, verdict

    root = tmp_path / "results"
    (root / "lm_style_full").mkdir(parents=True)
    (root / "lm_style_full" / "results.json").write_text(json.dumps(res))
    rows = verdict.rows(root)  # equal gradient evaluations, equal main steps
    assert [r["task"] for r in rows] == [
        "LM style shift: WEB → KJV",
        "LM style shift: WEB → KJV (equal main steps)",
    ]
    assert {(r["model"], r["baseline"]) for r in rows} == {("byte LM, full", "adamw")}
    blocks = report.render_all(root)
    assert {"lm_style_full_tuned", "lm_style_full_memory", "verdict"} <= set(blocks)
    assert not any(k.startswith("lm_domain") for k in blocks)


@needs_bibles
def test_pilot_runs_adamw_on_validation_per_task(tmp_path):
    import ml_collections

    cfg = config.get_config("quick")
    cfg.pilot = ml_collections.ConfigDict(
        {
            "tasks": ("maintenance",),
            "learning_rates": (3e-3,),
            "seed": 100,
            "pretrain_steps": {"web": 20, "web_old": 10},
        }
    )
    cfg.pretrain.eval_every = 5
    page = suite_cli.run(
        "lm",
        cfg,
        lm_suite.Suite,
        main.write_outputs,
        workdir=str(tmp_path / "cache"),
        out=str(tmp_path / "out"),
        protocol_fn=main.run,
    )
    res = json.loads((tmp_path / "out" / "results.json").read_text())
    task = res["tasks"]["maintenance"]
    assert task["pretrained"]["history"][-1]["step"] == 10  # the old half's own pretraining
    (run,) = task["runs"].values()
    assert run["test"] == {} and [p["step"] for p in run["curve"]] == [0, 6, 12]
    assert "## maintenance" in page.read_text()
    assert (tmp_path / "out" / "pilot_maintenance.png").exists()
