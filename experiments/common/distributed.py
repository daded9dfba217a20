"""Multi-host helpers for the experiments: start-up, per-process data, logging.

Every host runs the same command. ``initialize`` joins them through
``jax.distributed`` — auto-detected on SLURM, Open MPI, Cloud TPU and other
clusters that jax knows, or given explicitly with flags::

    # host i of N (i = 0 .. N-1), the same coordinator on every host:
    python -m experiments.recipe --config ... --workdir ... --out ... \\
        --coordinator_address=host0:1234 --num_processes=N --process_id=i

After that ``jax.devices()`` lists the devices of all hosts; build the mesh
over them (``jax.make_mesh``). Each process loads only the rows of the global
batch that its own devices hold (:func:`process_batch_rows`) and assembles the
global batch with :func:`global_batch`. Log and write files on the main
process only (:func:`is_main_process`); collective operations (jit-compiled
steps, checkpoint saves) must run on every process.

Nothing here depends on the rest of ``experiments.common``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from absl import flags, logging

__all__ = [
    "DistributedConfig",
    "config_from_flags",
    "define_flags",
    "detected_cluster",
    "global_batch",
    "initialize",
    "is_main_process",
    "process_batch_rows",
    "should_initialize",
]

_MODES = ("auto", "on", "off")


@dataclasses.dataclass(frozen=True)
class DistributedConfig:
    """How to start ``jax.distributed``.

    Attributes:
      mode: ``"auto"`` initializes when an explicit setting is given or a
        multi-process launcher is detected (:func:`detected_cluster`) and runs
        single-process otherwise; ``"on"`` always initializes (lets jax
        auto-detect what was not given: TPU pods, Kubernetes, ...); ``"off"``
        never does.
      coordinator_address: ``host:port`` of process 0's coordinator service.
      num_processes: total number of processes.
      process_id: this process's index, in ``[0, num_processes)``.
      local_device_ids: restrict this process to these local devices.
      initialization_timeout: seconds to wait for all processes to join.
    """

    mode: str = "auto"
    coordinator_address: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    local_device_ids: tuple[int, ...] | None = None
    initialization_timeout: int = 300

    def __post_init__(self) -> None:
        if self.mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {self.mode!r}")
        if self.num_processes is not None and self.num_processes < 1:
            raise ValueError(f"num_processes must be >= 1, got {self.num_processes}")
        if self.process_id is not None and self.num_processes is not None:
            if not 0 <= self.process_id < self.num_processes:
                raise ValueError(
                    f"process_id must be in [0, {self.num_processes}), got {self.process_id}"
                )

    def explicit(self) -> bool:
        """True if any start-up setting was given explicitly."""
        return any(
            v is not None for v in (self.coordinator_address, self.num_processes, self.process_id)
        )


def define_flags(flag_values: flags.FlagValues = flags.FLAGS) -> None:
    """Defines ``--distributed``, ``--coordinator_address``, ``--num_processes``,
    ``--process_id`` and ``--local_device_ids`` (once; later calls do nothing)."""
    if "distributed" in flag_values:
        return
    flags.DEFINE_enum(
        "distributed",
        "auto",
        list(_MODES),
        "jax.distributed start-up: auto (when flags or a cluster launcher say so), on, off.",
        flag_values=flag_values,
    )
    flags.DEFINE_string(
        "coordinator_address",
        None,
        "host:port of process 0 (default: auto-detected, or $JAX_COORDINATOR_ADDRESS).",
        flag_values=flag_values,
    )
    flags.DEFINE_integer(
        "num_processes", None, "Total number of processes (hosts).", flag_values=flag_values
    )
    flags.DEFINE_integer(
        "process_id", None, "This process's index in [0, num_processes).", flag_values=flag_values
    )
    flags.DEFINE_list(
        "local_device_ids", None, "Local device ids this process uses.", flag_values=flag_values
    )


def config_from_flags(flag_values: flags.FlagValues = flags.FLAGS) -> DistributedConfig:
    """The :class:`DistributedConfig` given by the flags of :func:`define_flags`."""
    ids = flag_values["local_device_ids"].value
    return DistributedConfig(
        mode=flag_values["distributed"].value,
        coordinator_address=flag_values["coordinator_address"].value,
        num_processes=flag_values["num_processes"].value,
        process_id=flag_values["process_id"].value,
        local_device_ids=None if ids is None else tuple(int(i) for i in ids),
    )


def detected_cluster(environ: Mapping[str, str] | None = None) -> str | None:
    """Name of the multi-process launcher visible in the environment, if any.

    Recognises the variables that ``jax.distributed.initialize()`` reads:
    ``JAX_COORDINATOR_ADDRESS``, a SLURM job step with several tasks, an Open
    MPI launch (``mpirun``). Cloud TPU pods and Kubernetes are not detected
    here: use ``--distributed=on`` there.
    """
    env = os.environ if environ is None else environ
    if env.get("JAX_COORDINATOR_ADDRESS"):
        return "jax"
    if "OMPI_MCA_orte_hnp_uri" in env and int(env.get("OMPI_COMM_WORLD_SIZE", "1")) > 1:
        return "openmpi"
    slurm = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID")
    if all(k in env for k in slurm) and int(env["SLURM_NTASKS"]) > 1:
        return "slurm"
    return None


def should_initialize(config: DistributedConfig, environ: Mapping[str, str] | None = None) -> bool:
    """Whether :func:`initialize` will call ``jax.distributed.initialize``."""
    if config.mode == "off":
        return False
    if config.mode == "on":
        return True
    if config.num_processes == 1:
        return False
    return config.explicit() or detected_cluster(environ) is not None


def initialize(
    config: DistributedConfig | None = None, environ: Mapping[str, str] | None = None
) -> bool:
    """Joins the other processes (``jax.distributed.initialize``) if the config says so.

    Call it first, before anything touches a jax device. ``config`` defaults to
    the command-line flags (:func:`define_flags`). Returns True if this is a
    multi-process run. Calling it again is harmless.
    """
    import jax

    if config is None:
        config = config_from_flags()
    if jax.distributed.is_initialized():
        return jax.process_count() > 1
    if not should_initialize(config, environ):
        return False
    kwargs: dict[str, Any] = {"initialization_timeout": config.initialization_timeout}
    for name in ("coordinator_address", "num_processes", "process_id"):
        if getattr(config, name) is not None:
            kwargs[name] = getattr(config, name)
    if config.local_device_ids is not None:
        kwargs["local_device_ids"] = list(config.local_device_ids)
    jax.distributed.initialize(**kwargs)
    logging.info(
        "jax.distributed: process %d of %d, %d local / %d global devices",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )
    return jax.process_count() > 1


def is_main_process() -> bool:
    """True on the process that should log, write results and plots (process 0)."""
    import jax

    return jax.process_index() == 0


def _batch_axes(batch_axes: str | Sequence[str] | None) -> tuple[str, ...]:
    if batch_axes is None:
        return ()
    return (batch_axes,) if isinstance(batch_axes, str) else tuple(batch_axes)


def process_batch_rows(
    mesh: Any,
    batch_axes: str | Sequence[str] | None,
    global_batch_size: int,
    process_index: int | None = None,
) -> slice:
    """The rows of the global batch that one process's devices hold.

    The batch dimension is split over ``batch_axes`` of ``mesh`` (as in
    ``PartitionSpec(batch_axes)``: the first axis major) and replicated over
    the other axes. A process loads exactly these rows and passes them to
    :func:`global_batch`.

    Args:
      mesh: a ``jax.sharding.Mesh`` (anything with ``devices``, an array of
        objects with ``process_index``, and ``axis_names``).
      batch_axes: mesh axis name(s) the batch is split over; None: replicated.
      global_batch_size: rows of the global batch.
      process_index: which process (default: this one).

    Returns:
      A slice of contiguous rows.

    Raises:
      ValueError: if the batch does not divide evenly, or the process's rows
        are not contiguous (a mesh whose device order interleaves processes
        along the batch axes).
    """
    if process_index is None:
        import jax

        process_index = jax.process_index()
    axes = _batch_axes(batch_axes)
    names = list(mesh.axis_names)
    devices = np.asarray(mesh.devices)
    for a in axes:
        if a not in names:
            raise ValueError(f"batch axis {a!r} is not a mesh axis {tuple(names)}")
    # Move the batch axes to the front (in order) and flatten them: shard index.
    order = [names.index(a) for a in axes] + [i for i, n in enumerate(names) if n not in axes]
    n_shards = int(np.prod([devices.shape[names.index(a)] for a in axes], dtype=np.int64))
    per_shard = devices.transpose(order).reshape(n_shards, -1)
    if global_batch_size % n_shards:
        raise ValueError(
            f"global batch {global_batch_size} does not split into {n_shards} shards "
            f"over mesh axes {axes}"
        )
    rows = global_batch_size // n_shards
    mine = [
        k
        for k in range(n_shards)
        if any(d.process_index == process_index for d in per_shard[k].ravel())
    ]
    if not mine:
        raise ValueError(f"process {process_index} holds no device of the mesh")
    if mine != list(range(mine[0], mine[-1] + 1)):
        raise ValueError(
            f"process {process_index} holds batch shards {mine}, not contiguous: order the "
            "mesh devices by process along the batch axes (jax.make_mesh does)"
        )
    return slice(mine[0] * rows, (mine[-1] + 1) * rows)


def global_batch(
    local_batch: Any, mesh: Any, batch_axes: str | Sequence[str] | None, global_batch_size: int
) -> Any:
    """Assembles global ``jax.Array`` batches from each process's rows.

    ``local_batch`` is a pytree of NumPy arrays holding the rows
    :func:`process_batch_rows` names for this process. Leaves are sharded
    along their first dimension over ``batch_axes``.
    """
    import jax
    from jax.sharding import NamedSharding, PartitionSpec

    axes = _batch_axes(batch_axes)
    sharding = NamedSharding(mesh, PartitionSpec(axes if axes else None))

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_process_local_data(
            sharding, x, (global_batch_size, *x.shape[1:])
        )

    return jax.tree.map(put, local_batch)
