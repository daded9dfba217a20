"""Time one training step of the language model: pretraining, full and LoRA fine-tuning.

For sizing the language-model suite (experiments/lm_sizing.md). Each row is a
jitted ``nnx`` step (forward, backward, optimizer update) at the given batch and
context on random bytes; wall time and process CPU time per call are medians
over ``--calls`` calls after two warm-up calls (PROFIT's calls alternate
reference and main, so an even number of calls covers whole cycles). Also times
evaluating 1,000 windows. The load average is printed with the numbers: on a
shared machine wall times are not comparable across loads.

    PYTHONPATH=. nice -n 10 python -m experiments.lm.timing --config small --calls 10
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

import profit_optax
from experiments.lm import model as M


def _time_calls(fn, calls: int) -> tuple[float, float]:
    """(median wall s, median CPU s) per call of ``fn`` after two warm-up calls."""
    for _ in range(2):
        jax.block_until_ready(fn())
    wall, cpu = [], []
    for _ in range(calls):
        w0, c0 = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn())
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    return statistics.median(wall), statistics.median(cpu)


def time_step(cfg: M.LMConfig, tx, *, lora_rank: int | None, batch: int, calls: int):
    """(wall s, CPU s, trainable parameters, optimizer-state scalars) of one update call."""
    model = M.make_model(cfg, seed=0)
    wrt: type = nnx.Param
    if lora_rank is not None:
        model, wrt = M.with_lora(model, lora_rank, seed=1), nnx.LoRAParam
    optimizer = nnx.Optimizer(model, tx, wrt=wrt)

    @nnx.jit
    def step(model, optimizer, w):
        loss, grads = nnx.value_and_grad(M.next_byte_loss, argnums=nnx.DiffState(0, wrt))(model, w)
        optimizer.update(model, grads)
        return loss

    rng = np.random.default_rng(0)
    data = jnp.asarray(rng.integers(0, 256, (batch, cfg.context + 1)), jnp.int32)
    wall, cpu = _time_calls(lambda: step(model, optimizer, data), calls)
    state_size = sum(np.size(x) for x in jax.tree.leaves(nnx.state(optimizer, nnx.OptState)))
    return wall, cpu, M.param_count(model, wrt), state_size


def time_eval(cfg: M.LMConfig, *, windows: int = 1000, batch: int = 250) -> tuple[float, float]:
    """(wall s, CPU s) to compute the loss on ``windows`` windows, ``batch`` at a time."""
    model = M.make_model(cfg, seed=0)
    loss = nnx.jit(M.next_byte_loss)
    data = jnp.zeros((batch, cfg.context + 1), jnp.int32)
    n = windows // batch
    return tuple(x * n for x in _time_calls(lambda: loss(model, data), 3))  # type: ignore[return-value]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="small", choices=sorted(M.CONFIGS))
    parser.add_argument("--context", type=int, default=None, help="override the config's")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--lora-rank", type=int, default=8)
    args = parser.parse_args(argv)
    overrides = {} if args.context is None else {"context": args.context}
    cfg = M.LMConfig.named(args.config, **overrides)
    print(f"config {args.config}: {cfg}, batch {args.batch}, jax {jax.__version__}")
    print(f"load average before: {os.getloadavg()}")
    adamw = lambda: optax.adamw(1e-3)
    rows = [
        ("pretrain / full FT: adamw", adamw(), None),
        ("full FT: profit(adamw)", profit_optax.profit(adamw(), optax.sgd(1e-7)), None),
        (f"LoRA r={args.lora_rank}: adamw", adamw(), args.lora_rank),
        (
            f"LoRA r={args.lora_rank}: profit(adamw)",
            profit_optax.profit(adamw(), optax.sgd(1e-7)),
            args.lora_rank,
        ),
    ]
    print("| step | wall s/call | CPU s/call | trainable params | optimizer-state scalars |")
    print("|---|---|---|---|---|")
    for label, tx, rank in rows:
        wall, cpu, n, state = time_step(cfg, tx, lora_rank=rank, batch=args.batch, calls=args.calls)
        print(f"| {label} | {wall:.3f} | {cpu:.3f} | {n:,} | {state:,} |", flush=True)
    wall, cpu = time_eval(cfg)
    print(f"| evaluate 1,000 windows | {wall:.2f} | {cpu:.2f} | | |")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
