"""Command line shared by the ``experiments.<model>.main`` modules: ``--config`` and ``--workdir``.

Usage, as in the official Flax examples::

    python -m experiments.vit.main --config experiments/vit/configs/fashion_mnist_offline.py \
        --workdir runs/vit_fmnist [--config.quick=True] [--config.finetune.only=adam,profit]

On several hosts every host runs the same command; ``jax.distributed`` starts
from the flags of :func:`experiments.common.distributed.define_flags`
(``--distributed``, ``--coordinator_address``, ``--num_processes``,
``--process_id``, ``--local_device_ids``), see docs/scale_out.md.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

from experiments.common import distributed
from experiments.common.transfer import MaskFn, ModelFactory, run_transfer

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Experiment config file (get_config() of a .py file).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for checkpoints, metrics and plots.")
flags.mark_flags_as_required(["config", "workdir"])
distributed.define_flags()


def hide_gpus_from_tensorflow() -> None:
    """TF (used by TFDS only) must not grab accelerator memory that JAX needs."""
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")


def make_main(
    model_factory: ModelFactory, mask_fn: MaskFn | None = None
) -> Callable[[Sequence[str]], None]:
    """Returns an absl ``main`` that runs the transfer experiment for one model family.

    Args:
      model_factory: ``(config.model, num_classes) -> module``.
      mask_fn: ``params -> {"head_mask": ..., "embed_mask": ...}`` for the
        registry (default: ``profit_optax.masks``' default rules).
    """

    def main(argv: Sequence[str]) -> None:
        if len(argv) > 1:
            raise app.UsageError(f"Too many command-line arguments: {argv[1:]}")
        # Before anything touches a jax device: join the other processes, if any.
        distributed.initialize()
        main_process = distributed.is_main_process()
        if not main_process:  # only process 0 logs (warnings and errors still show)
            logging.set_verbosity(logging.WARNING)
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        hide_gpus_from_tensorflow()
        config = _CONFIG.value
        workdir = Path(_WORKDIR.value)
        run_transfer(config, model_factory, workdir, mask_fn=mask_fn, progress=main_process)
        if main_process:
            logging.info("Results written to %s", workdir)
            print((workdir / "results.md").read_text())

    return main
