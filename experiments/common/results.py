"""Metrics files and result tables: per-run JSON, mean ± std over seeds, JSON/CSV/Markdown."""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def to_jsonable(obj: Any) -> Any:
    """Converts NumPy/JAX scalars and arrays (and containers of them) to JSON-able Python."""
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if hasattr(obj, "tolist"):  # np.ndarray, np.generic, jax.Array
        return obj.tolist()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def write_json(path: str | os.PathLike[str], obj: Any) -> Path:
    """Writes ``obj`` as indented JSON (creating parent directories); NaN/inf become null."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(to_jsonable(obj), indent=2, sort_keys=False) + "\n")
    tmp.replace(path)  # atomic: a crash never leaves a half-written metrics file
    return path


def read_json(path: str | os.PathLike[str]) -> Any:
    """Reads a JSON file."""
    return json.loads(Path(path).read_text())


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (ddof=1; 0.0 for a single value)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return math.nan, math.nan
    std = float(arr.std(ddof=1)) if arr.size > 1 else 0.0
    return float(arr.mean()), std


def aggregate(
    records: Sequence[Mapping[str, Any]],
    *,
    group_by: str,
    metrics: Sequence[str],
    keep: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Groups ``records`` by ``group_by`` (first-seen order) and summarises ``metrics``.

    Each output row has ``group_by``, the ``keep`` fields of the group's first
    record, ``n`` (number of records), and ``<metric>_mean`` / ``<metric>_std``.
    """
    groups: dict[Any, list[Mapping[str, Any]]] = {}
    for record in records:
        groups.setdefault(record[group_by], []).append(record)
    rows = []
    for key, group in groups.items():
        row: dict[str, Any] = {group_by: key, **{k: group[0][k] for k in keep}, "n": len(group)}
        for metric in metrics:
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std([r[metric] for r in group])
        rows.append(row)
    return rows


def format_mean_std(mean: float | None, std: float | None, *, scale: float, digits: int) -> str:
    """``"12.34 ± 0.56"`` (values multiplied by ``scale``); ``"–"`` when missing."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    text = f"{mean * scale:.{digits}f}"
    if std is not None and not (isinstance(std, float) and math.isnan(std)):
        text += f" ± {std * scale:.{digits}f}"
    return text


def write_table(
    rows: Sequence[Mapping[str, Any]],
    stem: str | os.PathLike[str],
    *,
    columns: Sequence[tuple[str, str, float, int]],
    label_key: str,
    label_title: str = "method",
    title: str | None = None,
    notes: Sequence[str] = (),
) -> dict[str, Path]:
    """Writes ``rows`` to ``<stem>.json``, ``<stem>.csv`` and ``<stem>.md``.

    Args:
      rows: output of :func:`aggregate` (plus any extra rows with the same keys).
      stem: output path without suffix.
      columns: ``(metric, title, scale, digits)``: the metric's ``_mean``/``_std``
        fields become one column (Markdown ``mean ± std``; CSV two columns).
      label_key: the row field naming each row.
      label_title: header of the label column.
      title: Markdown heading.
      notes: Markdown lines printed under the table.
    """
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = {"json": write_json(stem.with_suffix(".json"), list(rows))}

    csv_path = stem.with_suffix(".csv")
    with csv_path.open("w", newline="") as f:
        writer = csv.writer(f)
        header = [label_title, "n"]
        for metric, *_ in columns:
            header += [f"{metric}_mean", f"{metric}_std"]
        writer.writerow(header)
        for row in rows:
            line = [row[label_key], row.get("n", "")]
            for metric, *_ in columns:
                for suffix in ("_mean", "_std"):
                    value = row.get(metric + suffix)
                    line.append("" if value is None or value != value else f"{value:.6g}")
            writer.writerow(line)
    paths["csv"] = csv_path

    md = [f"# {title}", ""] if title else []
    md.append("| " + " | ".join([label_title, "seeds", *(c[1] for c in columns)]) + " |")
    md.append("|" + "---|" * (len(columns) + 2))
    for row in rows:
        cells = [str(row[label_key]), str(row.get("n", ""))]
        for metric, _, scale, digits in columns:
            cells.append(
                format_mean_std(
                    row.get(metric + "_mean"), row.get(metric + "_std"), scale=scale, digits=digits
                )
            )
        md.append("| " + " | ".join(cells) + " |")
    if notes:
        md += ["", *notes]
    md_path = stem.with_suffix(".md")
    md_path.write_text("\n".join(md) + "\n")
    paths["md"] = md_path
    return paths
