"""Times the ResNet's training steps against the ViT-mini's, in one process (for sizing).

Every step runs on the same batch shape (128 Fashion-MNIST-sized images), jitted and
warmed up, timed in ``rounds`` interleaved rounds of ``reps`` calls; the ratio to the
ViT-mini's Adam step is what carries over to other machines and loads (the committed
ViT-mini results record its per-call time). Prints one JSON object::

    nice -n 10 python -m experiments.resnet.sizing [--variant mini] [--reps 20] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import profit_optax
from experiments.common.data import normalize
from experiments.resnet.model import num_params, resnet
from experiments.resnet.steps import make_step
from experiments.vit.model import vit

BATCH = 128


def _batch(seed: int, lead: tuple[int, ...] = ()) -> dict[str, jax.Array]:
    rng = np.random.default_rng(seed)
    return {
        "image": jnp.asarray(rng.integers(0, 256, (*lead, BATCH, 28, 28, 1)), jnp.uint8),
        "label": jnp.asarray(rng.integers(0, 5, (*lead, BATCH)), jnp.int32),
    }


def _loss(model: nnx.Module, batch: dict[str, jax.Array]) -> jax.Array:
    logits = model(normalize(batch["image"]))
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()


def resnet_steps(variant: str) -> dict[str, Callable[[], jax.Array]]:
    """One thunk per measured step (each owns its model and optimizer)."""
    out: dict[str, Callable[[], jax.Array]] = {}
    one, two = _batch(0), _batch(1, lead=(2,))
    cases = {
        "pretrain_adamw": ("every_call", optax.adamw(1e-3, weight_decay=1e-4), one),
        "finetune_adam": ("every_call", optax.adam(1e-4), one),
        "profit_every_call": ("every_call", profit_optax.profit(optax.adam(1e-4)), one),
        "profit_at_model": ("at_model", profit_optax.profit(optax.adam(1e-4)), one),
        # one call = one whole cycle (two gradients): compare with two alternating calls
        "profit_one_call_cycle": (
            "one_call",
            profit_optax.profit(optax.adam(1e-4), one_call=True),
            two,
        ),
    }
    for name, (mode, tx, batch) in cases.items():
        model = resnet(variant, 5, rngs=nnx.Rngs(0))
        optimizer = nnx.Optimizer(model, tx, wrt=nnx.Param)
        step = make_step(mode, _loss)
        out[name] = lambda s=step, m=model, o=optimizer, b=batch: s(m, o, b)

    model = resnet(variant, 5, rngs=nnx.Rngs(0))
    model.eval()
    evaluate = nnx.jit(lambda m, x: m(normalize(x)))
    images = _batch(2)["image"]
    out["eval_forward"] = lambda: evaluate(model, images)
    return out


def vit_step() -> Callable[[], jax.Array]:
    """The ViT-mini's Adam step (the recipe's model, flax.linen)."""
    model = vit("mini", 5, patch_size=7, pool="tok")
    batch = _batch(0)
    params = model.init(jax.random.key(0), normalize(batch["image"][:1]))["params"]
    tx = optax.adam(1e-4)
    state = [params, tx.init(params)]

    def loss(p, b):
        logits = model.apply({"params": p}, normalize(b["image"]), train=True)
        return optax.softmax_cross_entropy_with_integer_labels(logits, b["label"]).mean()

    @jax.jit
    def step(p, s, b):
        value, grads = jax.value_and_grad(loss)(p, b)
        updates, s = tx.update(grads, s, p)
        return optax.apply_updates(p, updates), s, value

    def run() -> jax.Array:
        state[0], state[1], value = step(state[0], state[1], batch)
        return value

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", default="mini")
    parser.add_argument("--reps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    thunks = {"vit_mini_adam": vit_step(), **resnet_steps(args.variant)}
    load_before = os.getloadavg()
    compile_s = {}
    for name, thunk in thunks.items():
        t0 = time.perf_counter()
        jax.block_until_ready(thunk())
        compile_s[name] = time.perf_counter() - t0
    times: dict[str, list[float]] = {name: [] for name in thunks}
    for _ in range(args.rounds):
        for name, thunk in thunks.items():
            t0 = time.perf_counter()
            for _ in range(args.reps):
                value = thunk()
            jax.block_until_ready(value)
            times[name].append((time.perf_counter() - t0) / args.reps)
    median = {name: statistics.median(t) for name, t in times.items()}
    vit = median["vit_mini_adam"]
    print(
        json.dumps(
            {
                "variant": args.variant,
                "params": num_params(resnet(args.variant, 5, rngs=nnx.Rngs(0))),
                "batch": BATCH,
                "cpus": os.cpu_count(),
                "loadavg_before": load_before,
                "loadavg_after": os.getloadavg(),
                "ms_median": {k: round(1e3 * v, 2) for k, v in median.items()},
                "ms_rounds": {k: [round(1e3 * x, 2) for x in v] for k, v in times.items()},
                "ratio_to_vit_mini": {k: round(v / vit, 3) for k, v in median.items()},
                "first_call_s": {k: round(v, 2) for k, v in compile_s.items()},
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main()
