"""The λ_ref sensitivity sweeps (experiments/lambda_sweep): statistics, the bar, quick runs."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import profit_optax
from experiments.lambda_sweep import grid, stats

FILES = ("json", "csv", "md", "png")
ROOT = Path(__file__).resolve().parents[1]


def test_points_include_the_default_ref_scale_and_set_hparams():
    base = {"profit": {"learning_rate": 1e-3, "ref_learning_rate": 1e-6}}
    pts = grid.make_points(base, [1e-2], [])
    assert [(p.kind, p.value) for p in pts] == [("fixed", 1e-5), ("auto", grid.default_ref_scale())]
    assert grid.default_ref_scale() == profit_optax.DEFAULT_REF_SCALE == 3e-4
    assert pts[0].hparams({"learning_rate": 1e-3, "ref_learning_rate": 1e-6}) == {
        "learning_rate": 1e-3,
        "ref_learning_rate": 1e-5,
    }
    assert pts[1].hparams({"learning_rate": 1e-3}) == {
        "learning_rate": 1e-3,
        "ref_learning_rate": None,
        "ref_scale": 3e-4,
    }


def _records(values, lower_is_better):
    """Synthetic records: {(kind, value): [mean metric per seed]}."""
    out = []
    for (kind, value), per_seed in values.items():
        for seed, m in enumerate(per_seed):
            r = {"method": "profit", "kind": kind, "value": value, "seed": seed}
            for split in ("val", "test"):
                r.update({f"old_{split}": m, f"new_{split}": m, f"mean_{split}": m})
            out.append(r)
    return out


@pytest.mark.parametrize("lower", [True, False])
def test_best_fixed_is_chosen_on_validation_and_the_bar_uses_seed_noise(lower):
    sign = 1 if lower else -1  # the same numbers, mirrored for accuracies
    values = {
        ("fixed", 1e-5): [sign * v for v in (1.0, 1.2, 1.1)],
        ("fixed", 1e-6): [sign * v for v in (2.0, 2.0, 2.0)],
        # the default: 0.05 worse than the best fixed λ_ref, whose std is 0.1: within noise
        ("auto", grid.default_ref_scale()): [sign * v for v in (1.05, 1.25, 1.15)],
        ("auto", 0.1): [sign * v for v in (1.6, 1.6, 1.6)],
    }
    metric = stats.Metric("m", lower_is_better=lower)
    res = stats.summarize(_records(values, lower), metric)["profit"]
    assert res["best_fixed"]["value"] == 1e-5
    assert res["best_ref_scale"]["value"] == grid.default_ref_scale()
    bar = res["bar"]
    assert bar["gap"] == pytest.approx(0.05) and bar["noise"] == pytest.approx(0.1)
    assert bar["paired_gap_mean"] == pytest.approx(0.05)
    assert bar["paired_gap_se"] == pytest.approx(0.0, abs=1e-12)
    assert bar["holds"]
    for worse in [(1.5, 1.5, 1.5), (1.0, 1.0, 1e3)]:  # consistently worse; one seed blows up
        values[("auto", grid.default_ref_scale())] = [sign * v for v in worse]
        assert not stats.summarize(_records(values, lower), metric)["profit"]["bar"]["holds"]


def _check_outputs(out, name, methods):
    for ext in FILES:
        assert (out / f"{name}_sweep.{ext}").stat().st_size > 0
    assert (out / f"{name}_sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    payload = json.loads((out / f"{name}_sweep.json").read_text())
    assert list(payload["summary"]) == methods
    for res in payload["summary"].values():
        assert res["bar"]["best_value"] > 0 and np.isfinite(res["bar"]["auto_mean"])
    assert "The bar" in (out / f"{name}_sweep.md").read_text()


@pytest.mark.slow
def test_toy2d_quick_sweep(tmp_path):
    from experiments.lambda_sweep import toy2d
    from experiments.lambda_sweep.configs import toy2d as toy2d_config

    config = toy2d_config.get_config("quick")
    config.methods, config.ratios = ("profit",), (1e-2,)
    toy2d.run(config, tmp_path, command="test")
    _check_outputs(tmp_path, "toy2d_quick", ["profit"])


@pytest.mark.slow
def test_toy2d_x64_keeps_a_tiny_reference_step(tmp_path):
    """At λ_ref = 3e-10 the float32 toy's Δ rounds to 0 (λ_equiv 0 in the committed sweep);
    fine-tuned in float64 (a subprocess: x64 is process-global) Δ keeps its nominal size."""
    cmd = [
        sys.executable, "-m", "experiments.lambda_sweep.toy2d",
        "--config=experiments/lambda_sweep/configs/toy2d.py:quick", "--config.x64=True",
        "--config.methods=('profit_sgd',)", "--config.ratios=(1e-7,)",
        "--config.ref_scales=(0.01,)", f"--out={tmp_path}",
    ]  # fmt: skip
    subprocess.run(cmd, check=True, cwd=ROOT, capture_output=True, timeout=600)
    data = json.loads((tmp_path / "toy2d_x64_quick_sweep.json").read_text())
    assert data["title"].endswith("float64")
    assert data["environment"]["command"].endswith(" ".join(cmd[3:]))
    (rec,) = [r for r in data["records"] if r["kind"] == "fixed"]
    assert rec["value"] == pytest.approx(3e-10)
    assert rec["lambda_equiv"] == pytest.approx(3e-10, rel=0.2)
    assert rec["conflict_rate"] > 0.5


@pytest.mark.slow
@pytest.mark.parametrize("task", ["mlp", "vit"])
def test_fashion_mnist_quick_sweep_on_mock_data(tmp_path, task):
    import importlib

    from experiments.lambda_sweep import transfer

    tfds = pytest.importorskip("tensorflow_datasets")
    sweep_config = importlib.import_module(f"experiments.lambda_sweep.configs.{task}")
    pipeline = importlib.import_module(f"experiments.{task}.configs.fashion_mnist_offline")
    model = importlib.import_module(f"experiments.{task}.model")
    config = sweep_config.get_config("quick")
    config.seeds = (0,)

    def sweep():
        transfer.run(
            config,
            pipeline.get_config,
            model.build_model,
            out=tmp_path,
            workdir=tmp_path / "work",
            command="test",
        )

    with tfds.testing.mock_data(num_examples=200):
        sweep()
    _check_outputs(tmp_path, f"{task}_quick", ["profit"])
    assert (tmp_path / "work" / "pretrain" / "checkpoint").is_dir()
    # a rerun reuses the pretrained checkpoint and every finished run
    runs = sorted((tmp_path / "work" / "runs").rglob("*.json"))
    assert runs  # one cached record per point and seed
    mtimes = [p.stat().st_mtime for p in runs]
    with tfds.testing.mock_data(num_examples=200):
        sweep()
    assert [p.stat().st_mtime for p in runs] == mtimes
