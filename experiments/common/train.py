"""A jitted training loop that is generic over a registry ``Method``.

A ``Method`` (``experiments.methods.Method``) bundles an Optax transformation
with how the loop stores parameters. One update call is::

    params = method.grad_params(stored)            # where the gradient is taken
    grads = grad(loss)(params, batch)              # ONE gradient evaluation
    updates, opt_state = method.tx.update(grads, opt_state, stored)
    stored = method.apply(stored, updates)

and what is evaluated/reported is ``method.eval_params(stored, opt_state)``
(slow weights for Lookahead, the reference point for PROFIT). Every method does
one gradient evaluation per update call, so equal numbers of update calls are
equal compute budgets; budgets must be multiples of ``method.period``. The one
exception, PROFIT in one-call mode (``method.grads_per_call > 1``), takes a whole
cycle per call: its calls get ``grads_per_call`` batches stacked on a leading axis,
the first for the gradient at the model, the others for the ``grad_fn`` that the
loop passes to ``tx.update``.

A model with non-trainable state that its training forward pass moves (batch-norm
running statistics) trains with a :class:`ModelState`: the state is carried beside
the parameters, the loss returns the new state, and evaluation sees both.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from experiments.common import distributed

PyTree = Any
Batch = Mapping[str, Any]
#: loss_fn(params, batch, rng) -> (scalar loss, dict of scalar metrics)
LossFn = Callable[[PyTree, Batch, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]
#: A loss of a model with state: loss_fn(params, batch, rng, state) -> (scalar loss,
#: (dict of scalar metrics, the state after the forward pass))
StatefulLossFn = Callable[
    [PyTree, Batch, jax.Array, PyTree], tuple[jax.Array, tuple[dict[str, jax.Array], PyTree]]
]
#: eval_fn(params) -> dict of Python floats, called on ``method.eval_params(...)``;
#: ``eval_fn(params, state)`` for a model with state
EvalFn = Callable[..., dict[str, float]]


class MethodLike(Protocol):
    """The subset of ``experiments.methods.Method`` that the training loops use."""

    name: str
    tx: optax.GradientTransformation

    @property
    def period(self) -> int: ...
    @property
    def grads_per_call(self) -> int: ...
    def init_params(self, params: PyTree) -> PyTree: ...
    def grad_params(self, stored: PyTree) -> PyTree: ...
    def eval_params(self, stored: PyTree, opt_state: optax.OptState) -> PyTree: ...
    def apply(self, stored: PyTree, updates: optax.Updates) -> PyTree: ...


@dataclasses.dataclass(frozen=True)
class DataParallel:
    """Data parallelism over a 1-D mesh of every process's devices (``jax.distributed``).

    Parameters, optimizer state and PRNG keys are replicated global arrays
    (``NamedSharding(mesh, P())``); batches are split along their first
    dimension over ``axis``. Every process iterates over the same host batches
    (same seed) and contributes only the rows its own devices hold
    (:func:`experiments.common.distributed.process_batch_rows`).
    """

    mesh: jax.sharding.Mesh
    axis: str = "data"

    @classmethod
    def over_all_devices(cls, axis: str = "data") -> DataParallel:
        """A mesh over ``jax.devices()`` of all processes (ordered by process).

        ``Auto`` axis type: the models need no sharding annotations (the
        compiler propagates the batch sharding).
        """
        mesh = jax.make_mesh((jax.device_count(),), (axis,), axis_types=(AxisType.Auto,))
        return cls(mesh, axis)

    @property
    def num_shards(self) -> int:
        return int(self.mesh.shape[self.axis])

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())

    def replicate(self, tree: PyTree) -> PyTree:
        """Global arrays replicated on the mesh from values that are equal on every process.

        Leaves that are already global arrays (not fully addressable) are
        resharded to replicated if they are not (every process takes part).
        """
        sharding = self.replicated

        def put(x):
            if isinstance(x, jax.Array) and not x.is_fully_addressable:
                return jax.device_put(x, sharding)
            if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
                data = put(jax.random.key_data(x))
                return jax.random.wrap_key_data(data, impl=jax.random.key_impl(x))
            host = np.asarray(jax.device_get(x))
            return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

        return jax.tree.map(put, tree)

    def shard_batch(self, batch: Batch, *, pad: bool = False) -> Batch:
        """The global batch assembled from this process's rows of the host ``batch``.

        Args:
          batch: dict of NumPy arrays, the same on every process.
          pad: zero-pad the batch to a multiple of the number of devices (only
            for batches with a ``mask`` of real rows, i.e. evaluation batches).
        """
        size = len(next(iter(batch.values())))
        if pad and size % self.num_shards:
            if "mask" not in batch:
                raise ValueError("only batches with a 'mask' can be padded")
            extra = self.num_shards - size % self.num_shards
            batch = {
                k: np.concatenate([v, np.zeros((extra, *v.shape[1:]), v.dtype)])
                for k, v in batch.items()
            }
            size += extra
        rows = distributed.process_batch_rows(self.mesh, self.axis, size)
        local = {k: np.asarray(v)[rows] for k, v in batch.items()}
        return distributed.global_batch(local, self.mesh, self.axis, size)


#: state_metrics(opt_state) -> dict of scalars logged with the train metrics (e.g. PROFIT's
#: diagnostics); averaged over the update calls between evaluations like the loss.
StateMetrics = Callable[[optax.OptState], Mapping[str, jax.Array]]


@dataclasses.dataclass(frozen=True)
class ModelState:
    """How a model's non-trainable state (batch-norm running statistics) moves in training.

    With it the loss is a :data:`StatefulLossFn`, :meth:`Trainer.fit` takes the initial
    ``state``, evaluation is ``eval_fn(params, state)`` and the result holds the final
    ``model_state``.

    Attributes:
      keep_if: ``keep_if(opt_state) -> bool scalar``, read before the call's update: where
        true, the call's forward pass leaves the state as it was (e.g.
        ``profit_optax.at_probe_point``: statistics only from forward passes at the model,
        not at PROFIT's probe points). None: every call's forward pass moves it.
      probe_loss_fn: for one-call methods (``grads_per_call > 1``): the loss of the probe
        gradients, given the state after the call's first forward pass (the state it
        returns is dropped); None: the training loss.
    """

    keep_if: Callable[[optax.OptState], jax.Array] | None = None
    probe_loss_fn: StatefulLossFn | None = None


def make_train_step(
    method: MethodLike,
    loss_fn: LossFn | StatefulLossFn,
    parallel: DataParallel | None = None,
    state_metrics: StateMetrics | None = None,
    model_state: ModelState | None = None,
) -> Callable[..., tuple]:
    """Returns the jitted update step of ``method`` on ``loss_fn``.

    Without ``model_state``: ``step(stored, opt_state, batch, rng) -> (stored, opt_state,
    metrics)``. With it (a model with state, :class:`ModelState`, or a one-call method,
    ``grads_per_call > 1``, whose ``batch`` is that many batches stacked): ``step(stored,
    opt_state, state, batch, rng) -> (stored, opt_state, state, metrics)`` and ``loss_fn`` is a
    :data:`StatefulLossFn`.

    Inputs are not donated: methods may legitimately alias buffers between
    ``stored`` and ``opt_state`` (Lookahead's synced fast/slow weights, a
    reference point equal to the parameters), which XLA cannot donate twice.
    With ``parallel`` the batch is split over its mesh and everything else
    (inputs and outputs) is replicated. ``state_metrics(opt_state)`` (after the
    update) adds scalars to the metrics, e.g. ``profit_optax.diagnostics``.
    """
    stateful = model_state is not None
    per_call = method.grads_per_call
    if per_call > 1 and not stateful:
        raise ValueError(f"{method.name}: a one-call method needs a ModelState")
    if per_call > 1 and parallel is not None:
        raise ValueError("one-call methods (stacked batches) run on one process only")
    value_and_grad = jax.value_and_grad(loss_fn, has_aux=True)

    def step(stored, opt_state, *args):
        state, batch, rng = args if stateful else (None, *args)
        params = method.grad_params(stored)
        extra_args = {}
        if not stateful:
            (loss, aux), grads = value_and_grad(params, batch, rng)
        else:
            assert model_state is not None
            first = jax.tree.map(lambda x: x[0], batch) if per_call > 1 else batch
            (loss, (aux, new_state)), grads = value_and_grad(params, first, rng, state)
            if per_call > 1:  # the probe gradients: batch i + 1, the state after the first pass
                probe_loss = model_state.probe_loss_fn or loss_fn

                def grad_fn(p, i):
                    b = jax.tree.map(lambda x: x[i + 1], batch)
                    r = jax.random.fold_in(rng, i + 1)
                    return jax.grad(lambda q: probe_loss(q, b, r, new_state)[0])(p)

                extra_args["grad_fn"] = grad_fn
            if model_state.keep_if is not None:
                keep = model_state.keep_if(opt_state)
                new_state = jax.tree.map(lambda a, b: jnp.where(keep, a, b), state, new_state)
        updates, opt_state = method.tx.update(grads, opt_state, stored, **extra_args)
        stored = method.apply(stored, updates)
        extra = dict(state_metrics(opt_state)) if state_metrics is not None else {}
        metrics = {"loss": loss, **aux, **extra}
        return (stored, opt_state, new_state, metrics) if stateful else (stored, opt_state, metrics)

    if parallel is None:
        return jax.jit(step)
    rep = parallel.replicated
    batch_sharding = NamedSharding(parallel.mesh, P(parallel.axis))
    state_sharding = (rep,) if stateful else ()
    shardings = (rep, rep, *state_sharding, batch_sharding, rep)
    return jax.jit(step, in_shardings=shardings, out_shardings=rep)


@dataclasses.dataclass
class TrainResult:
    """Outcome of :func:`train`.

    Attributes:
      stored: final stored pytree (``method.init_params`` form).
      opt_state: final optimizer state.
      eval_params: ``method.eval_params(stored, opt_state)`` at the end.
      history: one dict per evaluation point: ``step``, mean ``train_loss`` (and
        other train metrics) since the previous point, plus ``eval_fn``'s metrics.
      train_time_s: wall time of the training loop minus evaluation: update calls
        and host batching, without compilation.
      eval_time_s: wall time spent in ``eval_fn``.
      compile_time_s: time to compile the update step (0 when the trainer had
        already compiled it in an earlier run).
      model_state: the model's final state (a trainer with a :class:`ModelState`).
    """

    stored: PyTree
    opt_state: optax.OptState
    eval_params: PyTree
    history: list[dict[str, float]]
    train_time_s: float
    eval_time_s: float
    compile_time_s: float
    model_state: PyTree = None


class Trainer:
    """The jitted update step and ``eval_params`` of one method and loss.

    Build one per method and call :meth:`fit` for each run (e.g. each seed):
    the step is compiled once. Runs with different initial parameters need a
    method built for those parameters (registry methods may capture them, e.g.
    as an L2-SP anchor), hence a new ``Trainer``. With ``model_state`` the loss is a
    :data:`StatefulLossFn` and the model's state travels with the parameters
    (:class:`ModelState`); a one-call method (``grads_per_call > 1``) needs one.
    """

    def __init__(
        self,
        method: MethodLike,
        loss_fn: LossFn | StatefulLossFn,
        parallel: DataParallel | None = None,
        state_metrics: StateMetrics | None = None,
        model_state: ModelState | None = None,
    ):
        self.method = method
        self.parallel = parallel
        self.stateful = model_state is not None
        self.step_fn = make_train_step(method, loss_fn, parallel, state_metrics, model_state)
        if parallel is None:
            self.eval_params_fn = jax.jit(method.eval_params)
        else:
            self.eval_params_fn = jax.jit(method.eval_params, out_shardings=parallel.replicated)
        self._compiled_step: Callable | None = None

    def fit(
        self,
        params: PyTree,
        batches: Iterator[Batch],
        num_steps: int,
        *,
        rng: jax.Array,
        eval_fn: EvalFn | None = None,
        eval_every: int = 0,
        eval_at_start: bool = False,
        desc: str | None = None,
        progress: bool = True,
        state: PyTree = None,
    ) -> TrainResult:
        """Runs ``num_steps`` update calls of the method from ``params``.

        Args:
          params: initial parameters (not modified; a copy is trained).
          batches: iterator of host batches (dicts of NumPy arrays).
          num_steps: number of update calls = gradient evaluations. Must be a
            multiple of the method's period.
          rng: base key; step ``t`` uses ``fold_in(rng, t)`` (same for all methods).
          eval_fn: evaluates ``method.eval_params(stored, opt_state)``.
          eval_every: evaluate every this many steps (0: only at the end). Must be
            a multiple of the method's period, so that evaluation points fall at
            the ends of cycles.
          eval_at_start: also evaluate the initial parameters (step 0).
          desc: progress bar label.
          progress: show a tqdm progress bar.
          state: the model's initial state (a trainer with a :class:`ModelState`).
        """
        method = self.method
        step_fn, eval_params_fn = self.step_fn, self.eval_params_fn
        period = method.period
        if num_steps <= 0 or num_steps % period:
            raise ValueError(
                f"num_steps={num_steps} must be a positive multiple of the period {period} "
                f"of {method.name}"
            )
        if eval_every < 0 or (eval_every and eval_every % period):
            raise ValueError(f"eval_every={eval_every} must be a multiple of the period {period}")
        eval_points = set(range(eval_every, num_steps + 1, eval_every)) if eval_every else set()
        eval_points.add(num_steps)

        parallel = self.parallel
        if parallel is None:
            stored = method.init_params(params)
            opt_state = method.tx.init(stored)
            next_batch = lambda: next(batches)
        else:  # replicated global arrays; each process feeds its rows of every batch
            stored = method.init_params(parallel.replicate(params))
            opt_state = jax.jit(method.tx.init, out_shardings=parallel.replicated)(stored)
            rng = parallel.replicate(rng)
            next_batch = lambda: parallel.shard_batch(next(batches))
            state = parallel.replicate(state)
        # The arguments of a step besides the batch and key: the state rides along.
        carry = (stored, opt_state, state) if self.stateful else (stored, opt_state)

        history: list[dict[str, float]] = []
        eval_time = 0.0

        def evaluate(step: int, train_metrics: dict[str, float]) -> None:
            nonlocal eval_time
            record: dict[str, float] = {"step": step, **train_metrics}
            if eval_fn is not None:
                t0 = time.perf_counter()
                params = eval_params_fn(carry[0], carry[1])
                record.update(eval_fn(params, carry[2]) if self.stateful else eval_fn(params))
                eval_time += time.perf_counter() - t0
            history.append(record)

        if eval_at_start:
            evaluate(0, {})

        sums: dict[str, jax.Array] = {}
        count = 0
        first_batch = next_batch()
        compile_time = 0.0
        if self._compiled_step is None:
            t0 = time.perf_counter()
            self._compiled_step = step_fn.lower(
                *carry, first_batch, jax.random.fold_in(rng, 1)
            ).compile()
            compile_time = time.perf_counter() - t0
        step_fn = self._compiled_step
        bar = tqdm(total=num_steps, desc=desc or method.name, disable=not progress, leave=False)
        start = time.perf_counter()
        eval_time_before = eval_time
        for step in range(1, num_steps + 1):
            *carry, metrics = step_fn(
                *carry, first_batch if step == 1 else next_batch(), jax.random.fold_in(rng, step)
            )
            sums = metrics if not sums else jax.tree.map(jnp.add, sums, metrics)
            count += 1
            bar.update(1)
            if step in eval_points:
                # device_get waits for all queued steps, so the timings below are real.
                means = {f"train_{k}": float(v) / count for k, v in jax.device_get(sums).items()}
                sums, count = {}, 0
                evaluate(step, means)
                bar.set_postfix({k: f"{v:.4g}" for k, v in history[-1].items() if k != "step"})
        train_time = time.perf_counter() - start - (eval_time - eval_time_before)
        bar.close()
        return TrainResult(
            stored=carry[0],
            opt_state=carry[1],
            eval_params=eval_params_fn(carry[0], carry[1]),
            history=history,
            train_time_s=train_time,
            eval_time_s=eval_time,
            compile_time_s=compile_time,
            model_state=carry[2] if self.stateful else None,
        )


def stack_batches(batches: Iterator[Batch], n: int) -> Iterator[Batch]:
    """Every ``n`` consecutive batches stacked on a leading axis (the calls of a one-call
    method: ``n = grads_per_call``), in the order of ``batches``."""
    while True:
        group = [next(batches) for _ in range(n)]
        yield {k: np.stack([b[k] for b in group]) for k in group[0]}


def train(
    method: MethodLike,
    params: PyTree,
    loss_fn: LossFn,
    batches: Iterator[Batch],
    num_steps: int,
    parallel: DataParallel | None = None,
    **kwargs: Any,
) -> TrainResult:
    """One run: ``Trainer(method, loss_fn, parallel).fit(params, batches, num_steps, **kwargs)``."""
    return Trainer(method, loss_fn, parallel).fit(params, batches, num_steps, **kwargs)


def make_classifier_eval(
    apply_fn: Callable[[PyTree, jax.Array], jax.Array],
    parallel: DataParallel | None = None,
) -> Callable[[PyTree, Iterable[Batch]], dict[str, float]]:
    """Returns ``evaluate(params, batches) -> {"accuracy", "loss"}`` for a classifier.

    Args:
      apply_fn: ``apply_fn(params, images) -> logits`` (traced inside one jitted
        per-batch function, compiled once per batch shape).
      parallel: split each batch over this mesh (zero-padded to a multiple of
        its devices); ``params`` must then be replicated global arrays.

    The batches carry a float ``mask`` of real examples (see
    :func:`experiments.common.data.eval_batches`); padded rows are ignored.
    """

    @jax.jit
    def batch_sums(params, batch):
        logits = apply_fn(params, batch["image"])
        nll = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"])
        correct = (jnp.argmax(logits, -1) == batch["label"]).astype(jnp.float32)
        mask = batch["mask"]
        return {"correct": (correct * mask).sum(), "loss": (nll * mask).sum(), "n": mask.sum()}

    def evaluate(params: PyTree, batches: Iterable[Batch]) -> dict[str, float]:
        totals = None
        for batch in batches:
            if parallel is not None:
                batch = parallel.shard_batch(batch, pad=True)
            sums = batch_sums(params, batch)
            totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
        if totals is None:
            raise ValueError("empty evaluation set")
        totals = jax.device_get(totals)
        n = float(totals["n"])
        return {"accuracy": float(totals["correct"]) / n, "loss": float(totals["loss"]) / n}

    return evaluate


def pretrain_optimizer(cfg: Any) -> optax.GradientTransformation:
    """AdamW with linear warm-up + cosine decay to 0 over ``cfg.num_steps``, weight decay on
    matrices only (``ndim > 1``), gradients clipped to global norm ``cfg.grad_clip_norm``
    (``cfg``: ``learning_rate``, ``warmup_steps``, ``num_steps``, ``weight_decay``,
    ``grad_clip_norm``): every suite's pretraining."""
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


def profit_diagnostics(opt_state: optax.OptState) -> dict[str, jax.Array]:
    """PROFIT's diagnostics of the last main step as :data:`StateMetrics` (logged along
    training, averaged over the calls between evaluations): conflict rate, cos(g, Δ),
    removed fraction of ‖g‖."""
    from profit_optax import diagnostics

    d = diagnostics(opt_state)
    removed = d["removed_norm"] / jnp.maximum(d["grad_norm"], 1e-30)
    return {"conflict": d["conflict"], "cos_g_delta": d["cos_g_delta"], "removed_frac": removed}
