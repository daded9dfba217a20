"""A byte-level decoder-only transformer in Flax NNX, with optional LoRA adapters.

GPT-2's layout at CPU scale: token (byte) and learned position embeddings,
``depth`` pre-LayerNorm blocks ``x + attn(LN(x))``, ``x + MLP(LN(x))`` with
causal multi-head self-attention (separate query/key/value/output projections)
and a GELU MLP, a final LayerNorm, and the output layer (tied to the byte
embedding by default). No dropout: a model is a deterministic function of its
parameters.

LoRA (Hu et al., 2021) uses flax's own modules: with ``lora_rank=r`` every
attention and MLP projection is an ``nnx.LoRALinear`` whose adapters are
``nnx.LoRAParam`` leaves (``B`` starts at zero, so the adapted model starts equal
to its base). :func:`with_lora` turns a pretrained model into a LoRA model with
the same base weights; ``nnx.Optimizer(model, tx, wrt=nnx.LoRAParam)`` then trains
the adapters only, and a wrapped optimizer's state (e.g. PROFIT's θ_ref) covers
only them. ``nnx.LoRAParam`` subclasses ``nnx.Param``: full fine-tuning uses the
model without adapters and ``wrt=nnx.Param``.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
from flax import nnx

#: Named sizes. ``small`` is the issue's measured 0.9 M-parameter model; ``base`` ~1.9 M.
CONFIGS: dict[str, dict[str, int]] = {
    "tiny": {"width": 32, "depth": 2, "heads": 2, "mlp": 64, "context": 32},  # tests
    "small": {"width": 128, "depth": 4, "heads": 4, "mlp": 512, "context": 128},
    "base": {"width": 192, "depth": 4, "heads": 4, "mlp": 768, "context": 128},
}


@dataclasses.dataclass(frozen=True)
class LMConfig:
    """Model shape. ``lora_rank=None``: no adapters (pretraining, full fine-tuning)."""

    width: int = 128
    depth: int = 4
    heads: int = 4
    mlp: int = 512
    context: int = 128
    vocab: int = 256
    tied: bool = True
    lora_rank: int | None = None

    def __post_init__(self):
        for name in ("width", "depth", "heads", "mlp", "context", "vocab"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.width % self.heads:
            raise ValueError(f"width {self.width} is not divisible by heads {self.heads}")
        if self.lora_rank is not None and self.lora_rank < 1:
            raise ValueError(f"lora_rank must be >= 1 or None, got {self.lora_rank}")

    @classmethod
    def named(cls, name: str, **overrides) -> LMConfig:
        """One of :data:`CONFIGS`, with fields overridden."""
        if name not in CONFIGS:
            raise ValueError(f"unknown model config {name!r}; known: {sorted(CONFIGS)}")
        return cls(**{**CONFIGS[name], **overrides})


def _projection(d_in: int, d_out: int, cfg: LMConfig, rngs: nnx.Rngs) -> nnx.Module:
    init = nnx.initializers.normal(0.02)
    if cfg.lora_rank is None:
        return nnx.Linear(d_in, d_out, kernel_init=init, rngs=rngs)
    return nnx.LoRALinear(d_in, d_out, lora_rank=cfg.lora_rank, kernel_init=init, rngs=rngs)


class CausalSelfAttention(nnx.Module):
    """Multi-head self-attention where position ``t`` sees positions ``<= t`` only."""

    def __init__(self, cfg: LMConfig, rngs: nnx.Rngs):
        self.heads = cfg.heads
        self.query = _projection(cfg.width, cfg.width, cfg, rngs)
        self.key = _projection(cfg.width, cfg.width, cfg, rngs)
        self.value = _projection(cfg.width, cfg.width, cfg, rngs)
        self.out = _projection(cfg.width, cfg.width, cfg, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, d = x.shape
        split = lambda y: y.reshape(b, t, self.heads, d // self.heads)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        y = jax.nn.dot_product_attention(q, k, v, is_causal=True)
        return self.out(y.reshape(b, t, d))


class Block(nnx.Module):
    """Pre-LayerNorm transformer block: ``x + attn(LN(x))``, then ``x + MLP(LN(x))``."""

    def __init__(self, cfg: LMConfig, rngs: nnx.Rngs):
        self.ln_attn = nnx.LayerNorm(cfg.width, rngs=rngs)
        self.attn = CausalSelfAttention(cfg, rngs)
        self.ln_mlp = nnx.LayerNorm(cfg.width, rngs=rngs)
        self.fc_in = _projection(cfg.width, cfg.mlp, cfg, rngs)
        self.fc_out = _projection(cfg.mlp, cfg.width, cfg, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attn(self.ln_attn(x))
        return x + self.fc_out(jax.nn.gelu(self.fc_in(self.ln_mlp(x))))


class TransformerLM(nnx.Module):
    """``model(bytes [batch, time] int) -> logits [batch, time, vocab]`` (time <= context)."""

    def __init__(self, cfg: LMConfig, *, rngs: nnx.Rngs):
        self.cfg = cfg
        init = nnx.initializers.normal(0.02)
        self.embed = nnx.Embed(cfg.vocab, cfg.width, embedding_init=init, rngs=rngs)
        self.pos_embed = nnx.Param(init(rngs.params(), (cfg.context, cfg.width)))
        self.blocks = nnx.List([Block(cfg, rngs) for _ in range(cfg.depth)])
        self.ln_final = nnx.LayerNorm(cfg.width, rngs=rngs)
        self.head = None if cfg.tied else nnx.Linear(cfg.width, cfg.vocab, rngs=rngs)

    def __call__(self, tokens: jax.Array) -> jax.Array:
        t = tokens.shape[-1]
        if t > self.cfg.context:
            raise ValueError(f"sequence of {t} bytes is longer than the context {self.cfg.context}")
        x = self.embed(tokens) + self.pos_embed[...][:t]
        for block in self.blocks:
            x = block(x)
        x = self.ln_final(x)
        return self.embed.attend(x) if self.head is None else self.head(x)


def next_byte_loss(model: TransformerLM, windows: jax.Array) -> jax.Array:
    """Mean next-byte cross-entropy (nats, float32) on ``[batch, context + 1]`` windows
    (``experiments.data.text.nats_to_bits`` turns it into bits per byte)."""
    windows = jnp.asarray(windows, jnp.int32)
    logits = model(windows[:, :-1]).astype(jnp.float32)
    logp = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, windows[:, 1:, None], axis=-1))


@functools.lru_cache(maxsize=16)
def _jitted_init(cfg: LMConfig):
    return nnx.jit(lambda key: TransformerLM(cfg, rngs=nnx.Rngs(key)))


def make_model(cfg: LMConfig, seed: int = 0) -> TransformerLM:
    """``TransformerLM(cfg, rngs=nnx.Rngs(jax.random.key(seed)))``, initialized under ``jit``.

    One compilation per config and process instead of one per initializer
    call and shape in eager mode (seconds instead of tens of seconds on CPU).
    Eager construction from the same seed draws the same numbers; fused
    arithmetic under ``jit`` may differ from it in the last bit.
    """
    return _jitted_init(cfg)(jax.random.key(seed))


def with_lora(model: TransformerLM, rank: int, *, seed: int = 0) -> TransformerLM:
    """A LoRA copy of ``model``: the same base weights (copied), fresh rank-``rank`` adapters
    (initialized from ``seed``) on every attention and MLP projection. ``model`` is left
    unchanged."""
    if model.cfg.lora_rank is not None:
        raise ValueError(f"model already has LoRA adapters (rank {model.cfg.lora_rank})")
    lora = make_model(dataclasses.replace(model.cfg, lora_rank=rank), seed)
    base = jax.tree.map(jnp.copy, nnx.state(model, nnx.Param))  # copies, not views
    nnx.update(lora, base)
    return lora


def param_count(model: nnx.Module, wrt: type = nnx.Param) -> int:
    """Number of scalars in the ``wrt`` variables (``nnx.LoRAParam``: the adapters only)."""
    return sum(x.size for x in jax.tree.leaves(nnx.state(model, wrt)))


def base_param_count(model: nnx.Module) -> int:
    """Number of scalars in the non-LoRA parameters."""
    return param_count(model, nnx.Param) - param_count(model, nnx.LoRAParam)


@dataclasses.dataclass(frozen=True, eq=False)  # hashed by identity: a static jit argument
class Functional:
    """A model as a function of its trainable parameters, for optax loops over pytrees.

    ``params`` is the trainable variables' values as a plain nested dict (the pytree an
    optimizer and a registry method see: nothing else enters its state); :meth:`model`
    rebuilds the model from such a dict, the other variables (``rest``: e.g. the frozen base
    weights under LoRA) as they were. The same split as ``nnx.Optimizer(model, tx, wrt=...)``.
    """

    graphdef: nnx.GraphDef
    trainable: nnx.State
    rest: nnx.State

    @property
    def params(self) -> dict:
        """The trainable values (a fresh plain dict of arrays)."""
        return nnx.to_pure_dict(self.trainable)

    def model(self, params: dict) -> TransformerLM:
        """The model with ``params`` as its trainable values (traceable: use it in ``jit``)."""
        state = nnx.State(jax.tree.map(lambda x: x, self.trainable))  # a copy to fill
        nnx.replace_by_pure_dict(state, params)
        return nnx.merge(self.graphdef, state, self.rest)


def functional(model: TransformerLM, wrt: type = nnx.Param) -> Functional:
    """``model`` split into its ``wrt`` variables (trainable: ``nnx.Param`` for full
    fine-tuning and pretraining, ``nnx.LoRAParam`` for the adapters) and the rest."""
    graphdef, trainable, rest = nnx.split(model, wrt, ...)
    return Functional(graphdef, trainable, rest)
