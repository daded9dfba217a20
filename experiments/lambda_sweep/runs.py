"""Running every point of a sweep for every seed, resumably."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from experiments.common.cache import RunCache
from experiments.lambda_sweep.grid import Point

RunFn = Callable[[Point, int], dict[str, Any]]


#: What every record of ``run_fn`` holds; NaN (a diverged run) is stored as null in the cache.
METRICS = ("old_val", "new_val", "old_test", "new_test")


def restore_nan(record: Mapping[str, Any]) -> dict[str, Any]:
    """``record`` as read back from JSON, with its null metrics NaN again."""
    return {k: math.nan if k in METRICS and v is None else v for k, v in record.items()}


def run_sweep(
    points: Sequence[Point],
    seeds: Sequence[int],
    run_fn: RunFn,
    *,
    cache: RunCache | None = None,
    fingerprint: str = "",
    log: Callable[[str], None] = print,
) -> list[dict[str, Any]]:
    """Runs every point for every seed; returns one record per run.

    ``run_fn(point, seed)`` returns at least ``old_val, new_val, old_test, new_test`` (and may add
    fields, e.g. ``time_s``). With a ``cache``, records are stored under ``{"sweep":
    fingerprint, "point": label, "seed": seed}`` (describe everything but the point and seed in
    ``fingerprint``), so an interrupted sweep resumes.
    """
    records = []
    for i, point in enumerate(points):
        for seed in seeds:
            key = {"sweep": fingerprint, "point": point.label, "seed": seed}
            cached = cache.get(key) if cache is not None else None
            if cached is not None:
                records.append(restore_nan(cached))
                continue
            t0 = time.perf_counter()
            rec = dict(run_fn(point, seed))
            rec.setdefault("time_s", time.perf_counter() - t0)
            for split in ("val", "test"):
                rec[f"mean_{split}"] = (rec[f"old_{split}"] + rec[f"new_{split}"]) / 2
            rec.update(
                method=point.method,
                kind=point.kind,
                value=point.value,
                label=point.label,
                seed=seed,
            )
            records.append(rec)
            if cache is not None:
                cache.put(key, rec)
            log(
                f"[{i + 1}/{len(points)}] {point.label} seed {seed}: old {rec['old_test']:.4g} "
                f"new {rec['new_test']:.4g} (test), {rec['time_s']:.1f}s"
            )
    return records
