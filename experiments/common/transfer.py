"""The old-task -> new-task fine-tuning experiment, generic over the model.

Protocol (PROFIT paper, CIFAR-10 -> CIFAR-100 style):

1. **Pretrain** a classifier on the *old* task with AdamW (warmup + cosine) and
   save it with Orbax under ``<workdir>/pretrain``. A later run with the same
   pretraining settings restores it instead of training again, so every
   fine-tuning run starts from the same checkpoint.
2. **Fine-tune** for every configured optimizer ("method", from the registry)
   and every seed: the backbone starts from the checkpoint, the ``head`` is
   replaced by a zero-initialised head for the *new* task's classes (big_vision's
   fine-tuning default), so all runs start from the same point. The seed sets
   the order of the training batches and the augmentation; for a given seed
   every method sees exactly the same batches.
   All methods get the same number of update calls (= gradient evaluations).
3. **Measure** with ``method.eval_params(stored, opt_state)``:

   * ``new_acc``: new-task test accuracy of the fine-tuned model (new head);
   * ``old_acc``: old-task test accuracy of the fine-tuned *backbone* under the
     pretrained *old head*, kept frozen from the checkpoint. The old head is
     not trained during fine-tuning (the old data is gone), so ``old_acc``
     measures how much the shared representation drifted away from what the old
     head expects: forgetting.

4. **Report** per-run metrics JSON, a table (mean ± standard error over seeds) as
   JSON/CSV/Markdown, and PNG plots (old vs new accuracy, learning curves).

With several processes (``jax.distributed``, see
:mod:`experiments.common.distributed`) the same code runs data-parallel over a
1-D mesh of all devices (:class:`~experiments.common.train.DataParallel`):
every process reads the same batches and feeds its own rows; all processes
compute and save checkpoints (``workdir`` must be on a filesystem that they
share); only process 0 writes the JSON/CSV/Markdown results and plots.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from experiments.common import checkpoint, distributed, plotting, results
from experiments.common.data import (
    ArrayDataset,
    eval_batches,
    load_tfds_split,
    normalize,
    random_crop_flip,
    task_subset,
    train_batches,
)
from experiments.common.train import (
    DataParallel,
    LossFn,
    MethodLike,
    Trainer,
    make_classifier_eval,
    train,
)

PyTree = Any
#: (config.model, num_classes) -> flax module mapping float images [N,H,W,C] to logits.
ModelFactory = Callable[[ml_collections.ConfigDict, int], nn.Module]
#: make_method(name, params, *, head_mask=..., embed_mask=..., **hparams) -> Method
MethodFactory = Callable[..., MethodLike]
#: params -> extra keyword arguments for the method factory (the masks).
MaskFn = Callable[[PyTree], dict[str, PyTree]]

#: Top-level parameter name of the classification head (contract with profit_optax.masks).
HEAD = "head"

#: Settings applied by ``config.quick=True``, before the config's own ``quick_overrides``.
QUICK_DEFAULTS: dict[str, Any] = {
    "old_task": {"max_train_examples": 256, "max_test_examples": 128},
    "new_task": {"max_train_examples": 256, "max_test_examples": 128},
    "pretrain": {"num_steps": 20, "warmup_steps": 2, "batch_size": 32, "eval_every": 10},
    # 12 and 6: multiples of the registry's periods (1, 2 for PROFIT/SAM, 6 for Lookahead).
    "finetune": {"num_steps": 12, "batch_size": 32, "eval_every": 6, "seeds": (0, 1)},
    "eval_batch_size": 64,
}


def _merge(config: ml_collections.ConfigDict, overrides: Mapping[str, Any]) -> None:
    for key, value in overrides.items():
        if isinstance(value, Mapping):
            _merge(config[key], value)
        else:
            config[key] = value


def resolve_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """A copy of ``config`` with the quick-mode overrides applied when ``config.quick``.

    Quick mode merges :data:`QUICK_DEFAULTS` and then the nested
    ``config.quick_overrides`` (e.g. ``{"model": {"variant": "mini"}}``) into
    the config: the whole pipeline on tiny budgets, for tests and smoke runs.
    """
    config = ml_collections.ConfigDict(config.to_dict(), type_safe=False)
    if config.get("quick", False):
        _merge(config, QUICK_DEFAULTS)
        _merge(config, config.get("quick_overrides", ml_collections.ConfigDict()).to_dict())
    return config


def _fingerprint(*parts: Any) -> str:
    blob = json.dumps([results.to_jsonable(p) for p in parts], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class TransferData:
    """Train/test splits of the old (pretraining) and new (fine-tuning) tasks."""

    old_train: ArrayDataset
    old_test: ArrayDataset
    new_train: ArrayDataset
    new_test: ArrayDataset


def load_transfer_data(config: ml_collections.ConfigDict) -> TransferData:
    """Loads the four datasets named by ``config.old_task`` and ``config.new_task``.

    Each TFDS split is read once, also when both tasks are class subsets of it.
    """
    data_dir = config.get("data_dir")
    splits: dict[tuple[str, str], ArrayDataset] = {}

    def load(task: ml_collections.ConfigDict, which: str) -> ArrayDataset:
        key = (task.dataset, task[f"{which}_split"])
        if key not in splits:
            splits[key] = load_tfds_split(*key, data_dir=data_dir)
        return task_subset(
            splits[key],
            classes=task.get("classes"),
            max_examples=task.get(f"max_{which}_examples"),
            subset_seed=task.get("subset_seed", 0),
        )

    return TransferData(
        old_train=load(config.old_task, "train"),
        old_test=load(config.old_task, "test"),
        new_train=load(config.new_task, "train"),
        new_test=load(config.new_task, "test"),
    )


def make_loss_fn(model: nn.Module, augment: ml_collections.ConfigDict) -> LossFn:
    """Softmax cross-entropy on augmented, normalised images; reports train accuracy."""

    def loss_fn(params, batch, rng):
        aug_rng, dropout_rng = jax.random.split(rng)
        images = random_crop_flip(
            aug_rng, batch["image"], crop_padding=augment.crop_padding, flip=augment.flip
        )
        logits = model.apply(
            {"params": params}, normalize(images), train=True, rngs={"dropout": dropout_rng}
        )
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        accuracy = (jnp.argmax(logits, -1) == batch["label"]).mean()
        return loss, {"accuracy": accuracy}

    return loss_fn


def make_apply_fn(model: nn.Module) -> Callable[[PyTree, jax.Array], jax.Array]:
    """``(params, uint8 images) -> logits`` in inference mode."""
    return lambda params, images: model.apply({"params": params}, normalize(images), train=False)


def init_params(model: nn.Module, sample: ArrayDataset, rng: jax.Array) -> PyTree:
    """Initialises ``model`` for the image shape of ``sample``."""
    dummy = jnp.zeros((1, *sample.images.shape[1:]), jnp.float32)
    return model.init(rng, dummy, train=False)["params"]


def pretrain_optimizer(cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """AdamW with linear warmup + cosine decay, weight decay on kernels only, gradient clipping."""
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=cfg.learning_rate,
        warmup_steps=cfg.warmup_steps,
        decay_steps=cfg.num_steps,
    )
    decay_mask = lambda params: jax.tree.map(lambda x: x.ndim > 1, params)
    return optax.chain(
        optax.clip_by_global_norm(cfg.grad_clip_norm),
        optax.adamw(schedule, weight_decay=cfg.weight_decay, mask=decay_mask),
    )


def pretrain_fingerprint(config: ml_collections.ConfigDict) -> str:
    """Hash of everything that determines the pretrained model."""
    return _fingerprint(
        config.model.to_dict(),
        config.old_task.to_dict(),
        config.pretrain.to_dict(),
        config.augment.to_dict(),
    )


def existing_pretrain_summary(
    config: ml_collections.ConfigDict, workdir: Path
) -> dict[str, Any] | None:
    """The summary of the checkpoint in ``workdir`` when there is one (None otherwise).

    Raises:
      ValueError: the checkpoint was made with other pretraining settings.
    """
    ckpt_dir = workdir / "pretrain" / "checkpoint"
    if not ckpt_dir.exists():
        return None
    summary_path = workdir / "pretrain" / "pretrain.json"
    summary = results.read_json(summary_path) if summary_path.exists() else {}
    fingerprint = pretrain_fingerprint(config)
    if summary.get("fingerprint") != fingerprint:
        raise ValueError(
            f"{ckpt_dir} was made with other pretraining settings (fingerprint "
            f"{summary.get('fingerprint')} != {fingerprint}); use a new --workdir or delete it."
        )
    return summary


def pretrain(
    config: ml_collections.ConfigDict,
    model: nn.Module,
    data: TransferData,
    workdir: Path,
    *,
    progress: bool = True,
    parallel: DataParallel | None = None,
) -> tuple[PyTree, dict[str, Any]]:
    """Pretrains ``model`` on the old task, or restores the matching checkpoint.

    With ``parallel`` the returned parameters are replicated global arrays.

    Returns:
      ``(params, summary)``; ``summary`` is also written to ``pretrain/pretrain.json``.

    Raises:
      ValueError: ``workdir`` holds a checkpoint made with different settings.
    """
    cfg = config.pretrain
    ckpt_dir = workdir / "pretrain" / "checkpoint"
    summary = existing_pretrain_summary(config, workdir)
    if summary is not None:
        logging.info("Restoring the pretrained model from %s", ckpt_dir)
        template = jax.eval_shape(lambda: init_params(model, data.old_train, jax.random.key(0)))
        if parallel is not None:
            return parallel.restore(ckpt_dir, template), summary
        return checkpoint.restore_pytree(ckpt_dir, template), summary

    init_rng, train_rng = jax.random.split(jax.random.key(cfg.seed))
    params = init_params(model, data.old_train, init_rng)
    evaluate = make_classifier_eval(make_apply_fn(model), parallel)
    eval_fn = lambda p: {
        "old_acc": evaluate(p, eval_batches(data.old_test, config.eval_batch_size))["accuracy"]
    }
    from experiments import methods as registry

    result = train(
        registry.plain_method("pretrain_adamw", pretrain_optimizer(cfg)),
        params,
        make_loss_fn(model, config.augment),
        train_batches(data.old_train, cfg.batch_size, seed=cfg.seed),
        cfg.num_steps,
        rng=train_rng,
        eval_fn=eval_fn,
        eval_every=cfg.eval_every,
        desc="pretrain",
        progress=progress,
        parallel=parallel,
    )
    checkpoint.save_pytree(ckpt_dir, result.eval_params)  # every process takes part
    summary = {
        "fingerprint": pretrain_fingerprint(config),
        "old_acc": result.history[-1]["old_acc"],
        "num_params": sum(x.size for x in jax.tree.leaves(result.eval_params)),
        "num_steps": cfg.num_steps,
        "train_time_s": result.train_time_s,
        "eval_time_s": result.eval_time_s,
        "compile_time_s": result.compile_time_s,
        "history": result.history,
    }
    if distributed.is_main_process():
        results.write_json(workdir / "pretrain" / "pretrain.json", summary)
    return result.eval_params, summary


def default_method_factory() -> MethodFactory:
    """``experiments.methods.make_method`` (imported lazily)."""
    from experiments import methods as registry

    return registry.make_method


def default_mask_fn(params: PyTree) -> dict[str, PyTree]:
    """Head and embedding masks by ``profit_optax.masks``' default rules.

    ``head`` is the head; ``embedding`` (ViT) or ``Dense_0`` (MLP) the embedding.
    """
    from profit_optax import masks

    return {"head_mask": masks.head_mask(params), "embed_mask": masks.embedding_mask(params)}


def selected_methods(config: ml_collections.ConfigDict) -> dict[str, dict[str, Any]]:
    """Run label -> ``{"method": registry name, **hparams}`` for the configured methods.

    ``config.finetune.methods`` maps labels to hparams; the optional ``method``
    entry names the registry method (default: the label). A non-empty
    ``config.finetune.only`` (comma-separated labels) selects a subset.
    """
    methods = {label: dict(spec) for label, spec in config.finetune.methods.items()}
    only = [s.strip() for s in config.finetune.get("only", "").split(",") if s.strip()]
    unknown = [s for s in only if s not in methods]
    if unknown:
        raise ValueError(f"finetune.only names unknown labels {unknown}; known: {list(methods)}")
    if only:
        methods = {label: methods[label] for label in only}
    for label, spec in methods.items():
        spec.setdefault("method", label)
    return methods


def finetune_params(pretrained: PyTree, new_model: nn.Module, sample: ArrayDataset) -> PyTree:
    """Pretrained backbone + a zero-initialised ``head`` for the new task.

    Zero-initialising the new head is big_vision's fine-tuning default; it also
    makes the starting point identical for every seed and method.
    """
    fresh = jax.eval_shape(lambda: init_params(new_model, sample, jax.random.key(0)))
    backbone = {k: v for k, v in pretrained.items() if k != HEAD}
    shapes = lambda t: jax.tree.map(lambda x: (x.shape, x.dtype), t)
    if shapes(backbone) != shapes({k: v for k, v in fresh.items() if k != HEAD}):
        raise ValueError("the new-task model's backbone does not match the pretrained one")
    head = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), fresh[HEAD])
    return {**backbone, HEAD: head}


def run_transfer(
    config: ml_collections.ConfigDict,
    model_factory: ModelFactory,
    workdir: str | Path,
    *,
    method_factory: MethodFactory | None = None,
    mask_fn: MaskFn | None = None,
    progress: bool = True,
    parallel: DataParallel | None = None,
) -> list[dict[str, Any]]:
    """Runs the whole experiment (see the module docstring) and writes its outputs.

    Args:
      config: experiment config (see ``experiments/vit/configs``); quick mode is
        resolved here.
      model_factory: ``(config.model, num_classes) -> module``; the old and new
        models must differ only in the ``head``.
      workdir: output directory.
      method_factory: ``make_method``-like factory; default the registry's.
      mask_fn: ``params -> dict`` of extra factory kwargs (``head_mask``,
        ``embed_mask``) built from the fine-tuning params; default
        :func:`default_mask_fn`.
      progress: show progress bars (on process 0 only).
      parallel: data parallelism over several processes; default:
        ``DataParallel.over_all_devices()`` when ``jax.process_count() > 1``,
        otherwise none (a single process runs on its default device).

    Returns:
      The aggregated table rows (also written to ``<workdir>/results.*`` by
      process 0).
    """
    config = resolve_config(config)
    if parallel is None and jax.process_count() > 1:
        parallel = DataParallel.over_all_devices()
    main_process = distributed.is_main_process()
    progress = progress and main_process
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    if main_process:
        results.write_json(workdir / "config.json", config.to_dict())
    method_factory = method_factory or default_method_factory()
    methods = selected_methods(config)
    ft = config.finetune
    existing_pretrain_summary(config, workdir)  # fail before loading data on a mismatch

    t0 = time.perf_counter()
    data = load_transfer_data(config)
    data_time = time.perf_counter() - t0
    logging.info(
        "Data loaded in %.1fs: old %d/%d, new %d/%d (train/test)",
        data_time,
        len(data.old_train),
        len(data.old_test),
        len(data.new_train),
        len(data.new_test),
    )
    old_model = model_factory(config.model, data.old_train.num_classes)
    new_model = model_factory(config.model, data.new_train.num_classes)
    pretrained, pre_summary = pretrain(
        config, old_model, data, workdir, progress=progress, parallel=parallel
    )
    old_head = pretrained[HEAD]

    evaluate_old = make_classifier_eval(make_apply_fn(old_model), parallel)
    evaluate_new = make_classifier_eval(make_apply_fn(new_model), parallel)

    def eval_fn(params: PyTree) -> dict[str, float]:
        old = evaluate_old(
            {**params, HEAD: old_head}, eval_batches(data.old_test, config.eval_batch_size)
        )
        new = evaluate_new(params, eval_batches(data.new_test, config.eval_batch_size))
        return {
            "old_acc": old["accuracy"],
            "new_acc": new["accuracy"],
            "old_loss": old["loss"],
            "new_loss": new["loss"],
        }

    loss_fn = make_loss_fn(new_model, config.augment)
    params = finetune_params(pretrained, new_model, data.new_train)
    if parallel is not None:
        params = parallel.replicate(params)
    extra = (mask_fn or default_mask_fn)(params)
    records: list[dict[str, Any]] = []
    for label, spec in methods.items():
        hparams = {k: v for k, v in spec.items() if k != "method"}
        trainer = None  # built (and compiled) on the first seed that needs it
        for seed in ft.seeds:
            run_path = workdir / "finetune" / label / f"seed_{seed}.json"
            budget = (ft.num_steps, ft.batch_size, ft.eval_every)
            fingerprint = _fingerprint(
                pre_summary["fingerprint"], config.new_task.to_dict(), budget, spec, seed
            )
            if _all_agree(
                run_path.exists() and results.read_json(run_path).get("fingerprint") == fingerprint
            ):
                logging.info("Reusing %s", run_path)
                records.append(results.read_json(run_path))
                continue
            if trainer is None:
                trainer = Trainer(
                    method_factory(spec["method"], params, **extra, **hparams), loss_fn, parallel
                )
            method = trainer.method
            result = trainer.fit(
                params,
                train_batches(data.new_train, ft.batch_size, seed=seed),
                ft.num_steps,
                rng=jax.random.key(seed),
                eval_fn=eval_fn,
                eval_every=ft.eval_every,
                eval_at_start=True,
                desc=f"{label} seed {seed}",
                progress=progress,
            )
            final = result.history[-1]
            record = {
                "label": label,
                "method": spec["method"],
                "hparams": dict(getattr(method, "hparams", hparams)),
                "period": method.period,
                "seed": seed,
                "num_steps": ft.num_steps,
                "batch_size": ft.batch_size,
                "old_acc": final["old_acc"],
                "new_acc": final["new_acc"],
                "mean_acc": (final["old_acc"] + final["new_acc"]) / 2,
                "old_loss": final["old_loss"],
                "new_loss": final["new_loss"],
                "train_time_s": result.train_time_s,
                "eval_time_s": result.eval_time_s,
                "compile_time_s": result.compile_time_s,
                "history": result.history,
                "fingerprint": fingerprint,
            }
            if main_process:
                results.write_json(run_path, record)
            records.append(record)
            logging.info(
                "%s seed %d: old %.4f new %.4f (%.1fs)",
                label,
                seed,
                record["old_acc"],
                record["new_acc"],
                record["train_time_s"],
            )
    return write_report(config, workdir, records, pre_summary)


def _all_agree(flag: bool) -> bool:
    """Process 0's ``flag`` on every process (all must take the same branch)."""
    if jax.process_count() == 1:
        return flag
    from jax.experimental import multihost_utils

    return bool(multihost_utils.broadcast_one_to_all(np.asarray(flag)))


#: Table columns: (metric, title, scale, digits).
TABLE_COLUMNS = (
    ("old_acc", "old acc (%)", 100.0, 2),
    ("new_acc", "new acc (%)", 100.0, 2),
    ("mean_acc", "mean (%)", 100.0, 2),
    ("train_time_s", "wall time (s)", 1.0, 1),
)


def write_report(
    config: ml_collections.ConfigDict,
    workdir: Path,
    records: list[dict[str, Any]],
    pre_summary: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """Writes ``results.{json,csv,md}`` and the PNG plots; returns the table rows.

    Only process 0 writes; the others just return the rows.
    """
    metrics = [c[0] for c in TABLE_COLUMNS]
    rows = results.aggregate(records, group_by="label", metrics=metrics, keep=("method",))
    if not distributed.is_main_process():
        return rows
    reference = {
        "label": "pretrained (no fine-tuning)",
        "method": "-",
        "n": 1,
        "old_acc_mean": pre_summary["old_acc"],
        "old_acc_se": math.nan,
        "train_time_s_mean": pre_summary.get("train_time_s", math.nan),
        "train_time_s_se": math.nan,
    }
    for metric in ("new_acc", "mean_acc"):
        reference[f"{metric}_mean"] = reference[f"{metric}_se"] = math.nan
    ft = config.finetune
    notes = [
        f"Old task: {config.old_task.dataset} classes {config.old_task.get('classes') or 'all'}; "
        f"new task: {config.new_task.dataset} classes {config.new_task.get('classes') or 'all'}.",
        "old acc: old-task test accuracy of the fine-tuned backbone with the frozen pretrained "
        "head; new acc: new-task test accuracy with the new head; mean: their average.",
        f"Fine-tuning: {ft.num_steps} update calls (= gradient evaluations) of batch "
        f"{ft.batch_size} per run from the pretrained backbone and a zero-initialised new "
        f"head; {results.SPREAD} {list(ft.seeds)} (seed = batch order and "
        "augmentation, shared by all methods).",
        "wall time: fine-tuning loop (update calls and batching) without evaluation and "
        "compilation; the reference row's is the pretraining time.",
    ]
    results.write_table(
        [reference, *rows],
        workdir / "results",
        columns=TABLE_COLUMNS,
        label_key="label",
        title=config.get("name", "fine-tuning results"),
        notes=notes,
    )
    plots = workdir / "plots"
    plotting.plot_tradeoff(
        rows,
        plots / "old_vs_new.png",
        x="old_acc",
        y="new_acc",
        label_key="label",
        xlabel="old-task test accuracy (%), frozen old head",
        ylabel="new-task test accuracy (%)",
        title=f"{config.get('name', '')}\n{results.SPREAD} {list(ft.seeds)}",
        scale=100.0,
        reference_x=pre_summary["old_acc"],
        reference_label="old acc before fine-tuning",
    )
    plotting.plot_learning_curves(
        records,
        plots / "learning_curves.png",
        metrics=[
            ("old_acc", "old-task test accuracy (frozen old head)"),
            ("new_acc", "new-task test accuracy"),
            ("train_loss", "new-task train loss"),
        ],
        label_key="label",
        title=config.get("name", ""),
    )
    if pre_summary.get("history"):
        plotting.plot_learning_curves(
            [{"label": "pretrain", "history": pre_summary["history"]}],
            plots / "pretrain_curve.png",
            metrics=[("old_acc", "old-task test accuracy"), ("train_loss", "train loss")],
            label_key="label",
            title="pretraining (AdamW)",
        )
    return rows
