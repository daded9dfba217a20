"""λ_ref sensitivity sweep on the Fashion-MNIST transfer pipeline (``experiments/common/transfer``).

Shared by :mod:`experiments.lambda_sweep.mlp` and :mod:`experiments.lambda_sweep.vit`. One
pretraining (the pipeline's own, restored from ``<workdir>/pretrain`` when it exists, or copied
from ``--pretrained-from``, an existing pipeline workdir with the same pretraining settings) is
shared by every run of the sweep; each run fine-tunes the pipeline's way (zero-initialised new
head, ``train_batches(seed)``, ``fold_in(key(seed), step)`` augmentation, the config's number of
update calls) with one point of the grid.

Validation vs test: the pipeline only has TFDS train/test splits, and training uses all train
images. Each task's test split is therefore cut once, by a fixed permutation (seed 0, independent
of the run seeds), into two halves: **validation** (used for every choice) and **test** (reported).
Accuracies are in %, higher is better; old = the old task's images under the frozen pretrained
head, new = the new task's images under the new head (as in ``docs/vit_experiment.md``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np

from experiments.common import results, transfer
from experiments.common.cache import RunCache
from experiments.common.data import ArrayDataset, eval_batches, train_batches
from experiments.common.train import Trainer, make_classifier_eval
from experiments.lambda_sweep import grid, precision, report, runs, stats

METRIC = stats.Metric("accuracy (%)", lower_is_better=False)


def split_half(ds: ArrayDataset, seed: int = 0) -> tuple[ArrayDataset, ArrayDataset]:
    """(validation, test): the two halves of ``ds`` under a fixed permutation."""
    perm = np.random.default_rng(seed).permutation(len(ds))
    half = len(ds) // 2
    take = lambda idx: ArrayDataset(
        ds.images[np.sort(idx)], ds.labels[np.sort(idx)], ds.class_names
    )
    return take(perm[:half]), take(perm[half:])


def _copy_pretrained(src: Path, workdir: Path, config: ml_collections.ConfigDict) -> None:
    """Copies ``src/pretrain`` into ``workdir`` when it matches ``config``'s pretraining."""
    dst = workdir / "pretrain"
    if dst.exists():
        return
    summary = json.loads((src / "pretrain" / "pretrain.json").read_text())
    if summary.get("fingerprint") != transfer.pretrain_fingerprint(config):
        raise ValueError(f"{src}/pretrain was made with other pretraining settings")
    shutil.copytree(src / "pretrain", dst)
    print(f"copied the pretrained model from {src}/pretrain", flush=True)


def make_runner(
    config: ml_collections.ConfigDict, model_factory, workdir: Path, methods, dtype: Any = None
):
    """Loads data, pretrains or restores once; returns ``(run_fn, pretrain summary)``.

    ``dtype`` (e.g. ``jnp.float64``, with ``jax_enable_x64`` on): the pretrained parameters
    are cast to it before fine-tuning and evaluation (the models compute in their
    parameters' dtype), so fine-tuning runs in that precision from the same checkpoint.
    """
    from experiments.methods import make_method
    from profit_optax import diagnostics

    t0 = time.perf_counter()
    data = transfer.load_transfer_data(config)
    print(f"data loaded in {time.perf_counter() - t0:.1f}s", flush=True)
    old_model = model_factory(config.model, data.old_train.num_classes)
    new_model = model_factory(config.model, data.new_train.num_classes)
    pretrained, pre_summary = transfer.pretrain(config, old_model, data, workdir, progress=False)
    old_head = precision.cast_params(pretrained[transfer.HEAD], dtype)
    splits = {"old": split_half(data.old_test), "new": split_half(data.new_test)}
    evaluate_old = make_classifier_eval(transfer.make_apply_fn(old_model))
    evaluate_new = make_classifier_eval(transfer.make_apply_fn(new_model))
    bs = config.eval_batch_size

    def eval_fn(params) -> dict[str, float]:
        out = {}
        for i, split in enumerate(("val", "test")):
            old = evaluate_old(
                {**params, transfer.HEAD: old_head}, eval_batches(splits["old"][i], bs)
            )
            new = evaluate_new(params, eval_batches(splits["new"][i], bs))
            out[f"old_{split}"] = 100.0 * old["accuracy"]
            out[f"new_{split}"] = 100.0 * new["accuracy"]
        return out

    loss_fn = transfer.make_loss_fn(new_model, config.augment)
    params = transfer.finetune_params(pretrained, new_model, data.new_train)
    params = precision.cast_params(params, dtype)
    extra = transfer.default_mask_fn(params)
    ft = config.finetune
    trainers: dict[grid.Point, Trainer] = {}

    def run_fn(point: grid.Point, seed: int) -> dict[str, Any]:
        if point not in trainers:
            hp = point.hparams(methods[point.method])
            trainers[point] = Trainer(make_method(point.method, params, **extra, **hp), loss_fn)
        trainer = trainers[point]
        result = trainer.fit(
            params,
            train_batches(data.new_train, ft.batch_size, seed=seed),
            ft.num_steps,
            rng=jax.random.key(seed),
            eval_fn=eval_fn,
            eval_every=0,
            progress=False,
        )
        d = jax.device_get(diagnostics(result.opt_state))
        grad = float(d["grad_norm"])
        return {
            **{k: result.history[-1][k] for k in ("old_val", "new_val", "old_test", "new_test")},
            # last main step only (a snapshot; the toy averages over the run)
            "lambda_equiv": float(d["delta_norm"]) / grad if grad > 0 else None,
            "conflict_rate": float(d["conflict"]),
            "removed_frac": float(d["removed_norm"]) / grad if grad > 0 else None,
            "steps": ft.num_steps,
            "time_s": result.train_time_s + result.compile_time_s,
            "train_time_s": result.train_time_s,
            "compile_time_s": result.compile_time_s,
        }

    def reference() -> dict[str, float]:
        return stats.reference_stats([eval_fn(params)])  # no fine-tuning: one number, std 0

    run_fn.reference = reference
    return run_fn, pre_summary


def run(
    config: ml_collections.ConfigDict,
    get_pipeline_config: Callable[[], ml_collections.ConfigDict],
    model_factory,
    *,
    out: Path,
    workdir: Path | None = None,
    pretrained_from: Path | None = None,
    command: str,
) -> dict[str, Any]:
    """Runs the sweep of ``config`` (``configs/mlp.py``, ``configs/vit.py``) on the pipeline
    config ``get_pipeline_config()``, writes ``<variant>_sweep.*`` to ``out``; returns the summary.

    ``workdir`` (pretrained checkpoint and run cache) defaults to
    ``runs/lambda_sweep/<task>[_x64][_quick]``; ``pretrained_from`` is an existing pipeline
    workdir whose pretrained model is copied (same pretraining settings only).
    """
    task = config.task
    dtype = precision.fine_tune_dtype(config.x64)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    pipeline = get_pipeline_config()
    pipeline.quick = bool(config.quick)
    pipeline = transfer.resolve_config(pipeline)
    if config.seeds:
        pipeline.finetune.seeds = tuple(config.seeds)
    if config.num_steps:
        pipeline.finetune.num_steps = config.num_steps
    name = grid.variant(task, x64=config.x64, quick=config.quick)
    workdir = workdir or Path("runs/lambda_sweep") / name
    workdir.mkdir(parents=True, exist_ok=True)
    if pretrained_from is not None:
        _copy_pretrained(pretrained_from, workdir, pipeline)
    methods = {}
    for label in config.methods:
        spec = dict(pipeline.finetune.methods[label])
        if spec.pop("method", label) != label:
            raise ValueError(f"{label}: only registry names are supported")
        methods[label] = spec
    seeds = list(pipeline.finetune.seeds)
    points = grid.priority_order(
        grid.make_points(methods, config.ratios, config.ref_scales), methods
    )
    t0 = time.perf_counter()
    run_fn, pre_summary = make_runner(pipeline, model_factory, workdir, methods, dtype)
    blob = json.dumps(
        [
            pre_summary["fingerprint"],
            pipeline.new_task.to_dict(),
            pipeline.finetune.num_steps,
            pipeline.finetune.batch_size,
            "val/test halves seed 0",
            methods,
            *(["float64"] if config.x64 else []),
        ],
        sort_keys=True,
        default=str,
    )
    fingerprint = hashlib.sha256(blob.encode()).hexdigest()[:16]
    records = runs.run_sweep(
        points, seeds, run_fn, cache=RunCache(workdir / "runs"), fingerprint=fingerprint
    )
    total = time.perf_counter() - t0
    summary = stats.summarize(
        records, METRIC, {n: float(m["learning_rate"]) for n, m in methods.items()}
    )
    ft = pipeline.finetune
    meta = {
        "config": pipeline.name
        + (" (quick)" if config.quick else "")
        + (", float64" if config.x64 else ""),
        "seeds": seeds,
        "methods": methods,
        "ratios": list(config.ratios),
        "ref_scales": list(config.ref_scales),
        "finetune_update_calls": ft.num_steps,
        "batch_size": ft.batch_size,
        "pretrained_old_acc_full_test": 100.0 * pre_summary["old_acc"],
        "splits": "each task's TFDS test split cut in halves (fixed permutation, seed 0): "
        "validation (choices) / test (reported)",
        "total_wall_time_s": round(total, 1),
        "sweep_config": config.to_dict(),
        "environment": results.environment(command),
    }
    paths = report.write_outputs(
        out,
        task=name,
        title=meta["config"],
        metric=METRIC,
        records=records,
        summary=summary,
        meta=meta,
        reference=run_fn.reference(),
        digits=2,
    )
    print(paths["md"].read_text())
    print(f"wrote {', '.join(map(str, paths.values()))} in {total:.1f}s")
    return summary


def cli(
    task: str,
    get_pipeline_config: Callable[[], ml_collections.ConfigDict],
    model_factory,
) -> None:
    """``python -m experiments.lambda_sweep.<task>``: flags (defined here, not on import), run."""
    from absl import app, flags
    from ml_collections import config_flags

    config = config_flags.DEFINE_config_file(
        "config", f"experiments/lambda_sweep/configs/{task}.py"
    )
    out = flags.DEFINE_string("out", "experiments/results/lambda_sweep", "output directory")
    workdir = flags.DEFINE_string(
        "workdir", None, "checkpoint and run cache (default runs/lambda_sweep/<variant>)"
    )
    pretrained_from = flags.DEFINE_string(
        "pretrained_from", None, "pipeline workdir whose pretrained model is copied"
    )

    def main(argv: Sequence[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"Too many command-line arguments: {argv[1:]}")
        run(
            config.value,
            get_pipeline_config,
            model_factory,
            out=Path(out.value),
            workdir=Path(workdir.value) if workdir.value else None,
            pretrained_from=Path(pretrained_from.value) if pretrained_from.value else None,
            command=" ".join([f"python -m experiments.lambda_sweep.{task}", *sys.argv[1:]]),
        )

    app.run(main)
