"""A language-model suite's tables, page and figures, from its ``results.json`` only: the
tables every suite has (:mod:`experiments.common.tables`), the optimizer's memory per method
(PROFIT's extra in this mode: full fine-tuning or LoRA) and the pretraining curve.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiments.common import tables

#: The reference PROFIT's extra memory is measured against (the paper's transformer baseline).
MEMORY_REFERENCE = "adamw"


def memory_table(res: Mapping[str, Any]) -> str:
    """Trainable parameters and each tuned method's extra memory (optimizer state and stored
    copies: θ_ref, slow weights), in bytes and per trainable parameter, and against AdamW."""
    rows_in = {
        k: v for k, v in res["rows"].items() if "@" not in k and not k.startswith("ablation:")
    }
    ref = rows_in.get(MEMORY_REFERENCE)
    ref_bytes = ref["runs"][0]["memory"]["extra_bytes"] if ref else None
    header = ["method", "trainable parameters", "extra bytes", "bytes / parameter"]
    header.append(f"minus `{MEMORY_REFERENCE}`")
    rows = []
    for label, row in rows_in.items():
        m = row["runs"][0]["memory"]
        n, b = m["trainable_params"], m["extra_bytes"]
        diff = (
            "–" if ref_bytes is None else f"{b - ref_bytes:+,} ({(b - ref_bytes) / n:+.2f}/param)"
        )
        rows.append([f"`{label}`", f"{n:,}", f"{b:,}", f"{b / n:.2f}", diff])
    mode = "LoRA adapters" if res["config"]["finetune"]["lora_rank"] else "every parameter"
    return tables.table(header, rows) + (
        f"\n\nTrained: {mode}. Extra bytes: the optimizer state plus what the training loop "
        "stores beyond the parameters (`experiments.methods.method_bytes_per_param`; fp32), "
        "counted over the trainable parameters only; gradients and activations not counted."
    )


def blocks(res: Mapping[str, Any], prefix: str) -> dict[str, str]:
    """The tables every suite has and the memory table (none without tuning: a demo)."""
    out = tables.blocks(res, prefix)
    if out:
        out[f"{prefix}_memory"] = memory_table(res)
    return out


TITLES = {**tables.TITLES, "memory": "Optimizer memory"}


def page(res: Mapping[str, Any], prefix: str) -> str:
    """The suite's ``results.md``: the pretraining curve, every table, the provenance."""
    pre = res["pretrained"]
    curve = ", ".join(f"{h['step']}: {h['val_bpb']:.3f}" for h in pre["history"])
    preamble = [
        f"Pretrained ({pre['params']:,} parameters): validation {pre['val_bpb']:.3f} bits per "
        f"byte (curve: {curve}); test {pre['test_bpb']:.3f}.",
        "",
    ]
    titles = {f"{prefix}_{k}": v for k, v in TITLES.items()}
    return tables.markdown(res, blocks(res, prefix), titles, preamble)


def plot(res: Mapping[str, Any], out_dir: Path) -> list[Path]:
    """The figures of :func:`experiments.common.tables.plot` and ``pretrain.png`` (validation
    bits per byte along pretraining: the convergence check)."""
    from experiments.common import plotting

    start = res["pretrained"]["start"]["test"]["old"]
    paths = tables.plot(res, out_dir, reference_x=start)
    hist, path = res["pretrained"]["history"], out_dir / "pretrain.png"
    paths.append(plotting.plot_pretraining(hist, "val_bpb", path, ylabel="validation bpb"))
    return paths
