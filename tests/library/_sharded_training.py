"""Shared pieces of the sharding tests: a small MLP, its data, sharding rules, a training run.

Used by the subprocess workers (``_sharding_worker.py``, ``_mp_worker.py``) and by the
parent tests for the single-device reference. Nothing here touches XLA flags or
``jax.distributed``; the workers do that before importing jax.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

import profit_optax

SIZES = (16, 64, 64, 32, 4)
BATCH = 32
LAYOUTS = ("dp", "fsdp", "2d")


# ----------------------------------------------------------------------------
# Model and data (NumPy, deterministic).


def init_mlp(seed: int = 0, sizes: Sequence[int] = SIZES) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    return {
        f"dense_{i}": {
            "kernel": (rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32),
            "bias": (0.1 * rng.standard_normal((b,))).astype(np.float32),
        }
        for i, (a, b) in enumerate(itertools.pairwise(sizes))
    }


def make_batches(
    n: int, seed: int = 1, batch: int = BATCH, sizes: Sequence[int] = SIZES
) -> list[dict[str, np.ndarray]]:
    """Regression batches from a fixed random teacher, with label noise."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((sizes[0], sizes[-1])).astype(np.float32)
    out = []
    for _ in range(n):
        x = rng.standard_normal((batch, sizes[0])).astype(np.float32)
        y = np.tanh(x @ w) + 0.3 * rng.standard_normal((batch, sizes[-1])).astype(np.float32)
        out.append({"x": x, "y": y.astype(np.float32)})
    return out


def mlp_loss(params: Any, batch: dict[str, jax.Array], gather: Callable = lambda w: w) -> jax.Array:
    """MSE of a tanh MLP. ``gather`` un-shards a parameter before use (FSDP)."""
    h = batch["x"]
    n = len(params)
    for i in range(n):
        layer = params[f"dense_{i}"]
        h = h @ gather(layer["kernel"]) + gather(layer["bias"])
        if i < n - 1:
            h = jnp.tanh(h)
    return jnp.mean(jnp.square(h - batch["y"]))


# ----------------------------------------------------------------------------
# Optimizers under test.


#: Adam's ε bounds its sensitivity to rounding: one call's update moves by at most about
#: lr/ε per unit change of the gradient. At optax's default ε = 1e-8 an element whose
#: gradient is near zero turns a rounding-level difference (a sharded reduction summing
#: in another order, another CPU's instruction set) into an update difference of order
#: lr, and the comparison with the single-device run would test that chaos, not the
#: sharding. ε = 1e-3 (gradients here are ~1e-2) keeps the runs Adam-like with
#: |∂u/∂g| ≤ lr/ε = 10: three cycles then agree to < 1e-5, 10× inside the tests' atol.
ADAM_EPS = 1e-3


def _adam() -> optax.GradientTransformation:
    return optax.adam(1e-2, eps=ADAM_EPS)


def make_tx(name: str) -> optax.GradientTransformation:
    """The PROFIT configurations (and bare Adam) the sharding tests run."""
    if name == "adam":
        return _adam()
    if name == "profit_nref1":
        return profit_optax.profit(_adam(), optax.sgd(1e-2))
    if name == "profit_nref2":  # momentum: a parameter-sized reference state too
        return profit_optax.profit(_adam(), optax.sgd(1e-2, momentum=0.9), n_ref=2)
    if name == "profit_auto":
        return profit_optax.profit(_adam(), None, ref_scale=0.5)
    if name == "profit_per_tensor":
        return profit_optax.profit(_adam(), optax.sgd(1e-2), projection="per_tensor")
    raise ValueError(f"unknown optimizer config {name!r}")


PERIODS = {
    "adam": 1,
    "profit_nref1": 2,
    "profit_nref2": 3,
    "profit_auto": 2,
    "profit_per_tensor": 2,
}


# ----------------------------------------------------------------------------
# Sharding rules.


def shard_spec(shape: Sequence[int], axes: Sequence[tuple[str, int]]) -> P:
    """Shards the largest dimension divisible by each mesh axis size over that axis.

    Axes are assigned in order, each to the largest still-free dimension whose
    size it divides; a dimension no axis divides stays replicated.
    """
    spec: list[str | None] = [None] * len(shape)
    for name, size in axes:
        if size == 1:
            continue
        for d in sorted(range(len(shape)), key=lambda d: -shape[d]):
            if spec[d] is None and shape[d] % size == 0:
                spec[d] = name
                break
    return P(*spec)


def make_layout_mesh(layout: str, axis_type: AxisType, devices=None) -> Mesh:
    """``dp``/``fsdp``: 1-D over every device; ``2d``: ``data`` × ``model`` (2 × rest)."""
    n = len(devices) if devices is not None else jax.device_count()
    if layout == "2d":
        shape, names = (2, n // 2), ("data", "model")
    else:
        shape, names = (n,), ("data" if layout == "dp" else "fsdp",)
    return jax.make_mesh(shape, names, axis_types=(axis_type,) * len(shape), devices=devices)


def param_specs(params: Any, layout: str, mesh: Mesh) -> Any:
    if layout == "dp":
        return jax.tree.map(lambda _: P(), params)
    if layout == "fsdp":
        axes = [("fsdp", mesh.shape["fsdp"])]
    else:
        axes = [("model", mesh.shape["model"]), ("data", mesh.shape["data"])]
    return jax.tree.map(lambda x: shard_spec(np.shape(x), axes), params)


def batch_spec(layout: str) -> P:
    """The batch dimension is split over every mesh axis (FSDP and data parallel alike)."""
    return {"dp": P("data"), "fsdp": P("fsdp"), "2d": P(("data", "model"))}[layout]


def is_explicit(mesh: Mesh) -> bool:
    return all(t == AxisType.Explicit for t in mesh.axis_types)


def make_gather(mesh: Mesh) -> Callable[[jax.Array], jax.Array]:
    """FSDP's all-gather of a parameter before use: replicate it over the mesh."""
    if is_explicit(mesh):
        return lambda w: jax.sharding.reshard(w, P())
    return lambda w: jax.lax.with_sharding_constraint(w, NamedSharding(mesh, P()))


def state_shardings(tx: optax.GradientTransformation, params: Any, param_shardings: Any, mesh):
    """Optimizer-state shardings: every parameter-like tree as the params, scalars replicated."""
    shapes = jax.eval_shape(tx.init, params)
    return optax.tree_utils.tree_map_params(
        tx,
        lambda _, s: s,
        shapes,
        param_shardings,
        transform_non_params=lambda _: NamedSharding(mesh, P()),
    )


# ----------------------------------------------------------------------------
# Training.


def global_array(x: np.ndarray, sharding: NamedSharding) -> jax.Array:
    """A global array from a NumPy value every process holds (works multi-process)."""
    return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def to_host(tree: Any) -> Any:
    """NumPy copies of a tree of (possibly not fully addressable) global arrays."""

    def get(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated:
            from jax.experimental import multihost_utils

            return np.asarray(multihost_utils.process_allgather(x, tiled=True))
        return np.asarray(x)

    return jax.tree.map(get, tree)


def flat_with_paths(tree: Any, prefix: str = "") -> dict[str, Any]:
    return {
        prefix + jax.tree_util.keystr(path): leaf
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
    }


@dataclasses.dataclass
class Run:
    """One training setup: optimizer, optional mesh and layout, compiled step."""

    tx_name: str
    mesh: Mesh | None = None
    layout: str = "fsdp"

    def __post_init__(self) -> None:
        self.tx = make_tx(self.tx_name)
        gather = (lambda w: w) if self.mesh is None else make_gather(self.mesh)
        loss = lambda p, b: mlp_loss(p, b, gather)
        tx = self.tx

        def step(params, state, batch):
            value, grads = jax.value_and_grad(loss)(params, batch)
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state, value

        self.step_fn = step
        self.step = jax.jit(step, donate_argnums=(0, 1))

    def mesh_context(self):
        import contextlib

        return contextlib.nullcontext() if self.mesh is None else jax.set_mesh(self.mesh)

    def shardings(self, params_np: Any) -> tuple[Any, Any]:
        mesh = self.mesh
        p_sh = jax.tree.map(
            lambda s: NamedSharding(mesh, s), param_specs(params_np, self.layout, mesh)
        )
        return p_sh, state_shardings(self.tx, params_np, p_sh, mesh)

    def init(self, params_np: Any) -> tuple[Any, Any]:
        if self.mesh is None:
            params = jax.tree.map(jnp.asarray, params_np)
            return params, jax.jit(self.tx.init)(params)
        p_sh, s_sh = self.shardings(params_np)
        params = jax.tree.map(global_array, params_np, p_sh)
        # out_shardings: with Auto axes, `jax.jit(tx.init)(params)` alone returns
        # *replicated* zeros for θ_ref and the Adam moments (a constant carries no sharding).
        return params, jax.jit(self.tx.init, out_shardings=s_sh)(params)

    def put_batch(self, batch_np: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        if self.mesh is None:
            return jax.tree.map(jnp.asarray, batch_np)
        sh = NamedSharding(self.mesh, batch_spec(self.layout))
        return jax.tree.map(lambda x: global_array(x, sh), batch_np)

    def train(self, params, state, batches_np, record: list | None = None):
        """Runs one step per batch; appends (loss, conflict, cos(g, Δ)) per step to ``record``."""
        for b in batches_np:
            params, state, value = self.step(params, state, self.put_batch(b))
            if record is not None:
                record.append((float(value), *_conflict_and_cos(state)))
        return params, state


def _conflict_and_cos(state: Any) -> tuple[float, float]:
    try:
        d = profit_optax.diagnostics(state)
    except ValueError:  # bare Adam: no PROFIT state
        return float("nan"), float("nan")
    return float(d["conflict"]), float(d["cos_g_delta"])


def sharding_mismatches(run: Run, params: Any, state: Any, params_np: Any) -> list[str]:
    """Leaves of (params, state) whose sharding is not the intended one."""
    p_sh, s_sh = run.shardings(params_np)
    bad = []
    for name, tree, want in (("params", params, p_sh), ("state", state, s_sh)):
        got_flat = flat_with_paths(tree, name)
        want_flat = flat_with_paths(want, name)
        assert got_flat.keys() == want_flat.keys(), (got_flat.keys(), want_flat.keys())
        for k, x in got_flat.items():
            w = want_flat[k]
            if not x.sharding.is_equivalent_to(w, x.ndim):
                bad.append(f"{k}: {x.sharding.spec} != {w.spec}")
            elif is_explicit(run.mesh):
                typed = jax.typeof(x).sharding.spec
                if not NamedSharding(run.mesh, typed).is_equivalent_to(w, x.ndim):
                    bad.append(f"{k}: type {typed} != {w.spec}")
    return bad
