"""The tuning protocol shared by the suites that follow the PROFIT paper's recipe.

* **Per-method tuning on validation.** Each method's grid (its learning rate,
  and for PROFIT its λ ratio) is searched on validation data carved from the
  training split, on tuning seeds disjoint from the reporting seeds; the score
  of a point is the mean over tuning seeds of the suite's criterion (lower is
  better). When the best learning rate sits at an edge of its grid, the grid is
  widened by one more value on that side (same log spacing), up to
  ``max_widening`` times; a choice still at the edge is flagged ``at_edge``.
* **Sharded, resumable execution.** :class:`Runner` runs a *batch* of jobs: it
  returns cached records, runs the jobs its shard owns (by configuration hash),
  then takes the other shards' unstarted jobs from the end of the batch (so a
  shard that finishes early does not sit idle), then waits for the remaining
  records to appear in the shared :class:`~experiments.common.cache.RunCache`.
  A job is *claimed* before it runs (a file created exclusively next to the
  cache, naming host and process, removed when the job ends), so no job runs
  twice at once; a claim left by a killed process on this host is taken over.
  Every shard walks the same deterministic sequence of batches, so ``n``
  processes with shards ``0..n-1`` split the work, and any process can be
  killed and restarted. In a multi-process ``jax.distributed`` run (``collective``)
  every process takes part in every job instead (data parallel): process 0 decides
  from the cache which jobs run and alone writes their records.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import math
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from experiments.common import results
from experiments.common.cache import RunCache, fingerprint

Job = tuple[Mapping[str, Any], Callable[[], Mapping[str, Any]]]


class Runner:
    """Runs batches of ``(config, fn)`` jobs through a cache, split over shards.

    Args:
      cache: where records live (shared by every shard).
      shard: this process's index ``i`` of ``n`` shards; job ``config`` belongs
        to shard ``int(fingerprint(config), 16) % n``.
      poll_s: seconds between looks for another shard's record.
      timeout_s: give up waiting for another shard after this long.
      collective: every process of a ``jax.distributed`` run runs every job together
        (one shard); process 0's cache decides what runs and only process 0 writes.
    """

    def __init__(
        self,
        cache: RunCache,
        shard: tuple[int, int] = (0, 1),
        *,
        poll_s: float = 2.0,
        timeout_s: float = 6 * 3600.0,
        collective: bool = False,
    ):
        index, count = shard
        if not 0 <= index < count:
            raise ValueError(f"shard must be (i, n) with 0 <= i < n, got {shard}")
        if collective and count != 1:
            raise ValueError("a collective (multi-process) run is one shard")
        self.cache, self.shard, self.collective = cache, (index, count), collective
        self.poll_s, self.timeout_s = poll_s, timeout_s
        self.ran = 0  # jobs this process ran (not read from the cache)

    def owns(self, config: Mapping[str, Any]) -> bool:
        index, count = self.shard
        return int(fingerprint(config), 16) % count == index

    def run_all(self, jobs: Sequence[Job]) -> list[dict[str, Any]]:
        """Records of every job, in order: cached, run here, or run by another shard.

        Runs this shard's jobs first (in order), then any other shard's job that nobody
        has claimed yet (from the end of the batch), then waits for the rest.
        """
        if self.collective:
            return [self._run_collective(config, fn) for config, fn in jobs]
        out: list[dict[str, Any] | None] = [self.cache.get(c) for c, _ in jobs]
        own = [i for i, (c, _) in enumerate(jobs) if self.owns(c)]
        others = [i for i, (c, _) in reversed(list(enumerate(jobs))) if not self.owns(c)]
        for i in own + others:
            config, fn = jobs[i]
            if out[i] is None:
                out[i] = self._run_claimed(config, fn)
        start = time.monotonic()
        for i, (config, _) in enumerate(jobs):
            while out[i] is None:
                out[i] = self.cache.get(config)
                if out[i] is None:
                    if time.monotonic() - start > self.timeout_s:
                        raise TimeoutError(f"no shard produced {self.cache.path(config)}")
                    time.sleep(self.poll_s)
        return [r for r in out if r is not None]

    def _run_collective(
        self, config: Mapping[str, Any], fn: Callable[[], Mapping[str, Any]]
    ) -> dict[str, Any]:
        """One job on every process: read if process 0 has its record, else run everywhere."""
        import jax
        import numpy as np
        from jax.experimental import multihost_utils

        main = jax.process_index() == 0
        record = self.cache.get(config) if main else None
        cached = bool(multihost_utils.broadcast_one_to_all(np.asarray(record is not None)))
        if cached and not main:  # the other processes read it from the shared cache
            record = self.cache.get(config)
            if record is None:
                raise RuntimeError(
                    f"process {jax.process_index()} cannot read {self.cache.path(config)}: "
                    "the run cache must be on a filesystem that every process shares"
                )
        if cached:
            return record
        record = fn()
        self.ran += 1
        if main:
            return self.cache.put(config, record)
        return results.to_jsonable(record)

    def claim_path(self, config: Mapping[str, Any]) -> Path:
        """Where the claim of ``config``'s job lives while it runs (beside the cache)."""
        return self.cache.root / ".claims" / fingerprint(config)

    def _run_claimed(
        self, config: Mapping[str, Any], fn: Callable[[], Mapping[str, Any]]
    ) -> dict[str, Any] | None:
        """Runs the job unless it is finished or claimed by a live process; None if skipped."""
        claim = self.claim_path(config)
        if not self._claim(claim):
            return None
        try:
            record = self.cache.get(config)  # finished while we looked elsewhere
            if record is None:
                record = self.cache.put(config, fn())
                self.ran += 1
            return record
        finally:
            claim.unlink(missing_ok=True)

    @staticmethod
    def _claim(path: Path) -> bool:
        """Creates ``path`` exclusively (host and pid inside); takes over a dead local claim."""
        path.parent.mkdir(parents=True, exist_ok=True)
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(2):
            try:
                fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                if not _stale(path):
                    return False
                path.unlink(missing_ok=True)  # its process died: take it over
                continue
            with os.fdopen(fd, "w") as f:
                f.write(me)
            return True
        return False


def _stale(claim: Path) -> bool:
    """A claim made on this host by a process that no longer runs."""
    try:
        host, pid = claim.read_text().split()
    except (OSError, ValueError):
        return False  # being written, or just removed: not ours to judge
    if host != socket.gethostname():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


def grid_points(grid: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of the grid's values, ``learning_rate`` varying slowest."""
    keys = list(grid)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*grid.values())]


def widened(values: Sequence[float], side: int) -> tuple[float, ...]:
    """``values`` (sorted, log-spaced) with one more value beyond the low (-1) or high (+1) end."""
    values = sorted(values)
    if side < 0:
        return (values[0] * values[0] / values[1], *values)
    return (*values, values[-1] * values[-1] / values[-2])


@dataclasses.dataclass
class Selection:
    """Outcome of tuning one method: the chosen point and every point's score."""

    hparams: dict[str, Any]
    score: float
    at_edge: bool
    learning_rates: tuple[float, ...]
    scores: list[dict[str, Any]]  # {"hparams": ..., "score": ...} for every point tried

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _finite(score: float) -> float:
    return score if math.isfinite(score) else math.inf


def tune(
    grids: Mapping[str, Mapping[str, Sequence[Any]]],
    score: Callable[[Sequence[tuple[str, dict[str, Any]]]], list[float]],
    *,
    max_widening: int,
) -> dict[str, Selection]:
    """Tunes every method of ``grids`` at once (one batch of jobs per round).

    Args:
      grids: label -> grid (``{"learning_rate": (...), other: (...)}``).
      score: ``[(label, hparams), ...] -> [score, ...]`` (lower is better; NaN or
        inf for a diverged point); called once per round with every point that
        has no score yet, so that a sharded :class:`Runner` can split them.
      max_widening: how many times a label's learning-rate grid may grow.

    Returns:
      label -> :class:`Selection`.
    """
    lrs = {label: tuple(sorted(g["learning_rate"])) for label, g in grids.items()}
    widenings = dict.fromkeys(grids, 0)
    scores: dict[str, dict[str, float]] = {label: {} for label in grids}
    points: dict[str, dict[str, dict[str, Any]]] = {label: {} for label in grids}
    while True:
        todo = []
        for label, grid in grids.items():
            for p in grid_points({**grid, "learning_rate": lrs[label]}):
                key = fingerprint(p)
                if key not in scores[label]:
                    points[label][key] = p
                    todo.append((label, p))
        if todo:
            for (label, p), s in zip(todo, score(todo), strict=True):
                scores[label][fingerprint(p)] = _finite(float(s))
        grown = False
        for label in grids:
            best_key = min(scores[label], key=scores[label].__getitem__)
            best_lr = points[label][best_key]["learning_rate"]
            index = lrs[label].index(best_lr)
            last = len(lrs[label]) - 1
            edge = 0 if last == 0 else (-1 if index == 0 else (1 if index == last else 0))
            if edge and widenings[label] < max_widening and math.isfinite(scores[label][best_key]):
                lrs[label] = widened(lrs[label], edge)
                widenings[label] += 1
                grown = True
                logging.info("%s: best lr %g at the grid's edge; widening", label, best_lr)
        if not grown:
            break
    out = {}
    for label in grids:
        best_key = min(scores[label], key=scores[label].__getitem__)
        best = points[label][best_key]
        index = lrs[label].index(best["learning_rate"])
        out[label] = Selection(
            hparams=best,
            score=scores[label][best_key],
            at_edge=index in (0, len(lrs[label]) - 1) and len(lrs[label]) > 1,
            learning_rates=lrs[label],
            scores=[{"hparams": points[label][k], "score": s} for k, s in scores[label].items()],
        )
    return out


def refine(
    selections: Mapping[str, Selection],
    labels: Sequence[str],
    name: str,
    values: Sequence[Any],
    score: Callable[[Sequence[tuple[str, dict[str, Any]]]], list[float]],
    *,
    default: Any = None,
) -> dict[str, Selection]:
    """A second tuning stage: one more hyper-parameter, chosen at each selected point.

    For every label of ``labels``, its selected point with ``name`` set to each of
    ``values`` (other than the point's own value, ``default`` when absent; the default
    itself is spelled by leaving ``name`` out, so that the first stage's points keep
    their cache keys) is scored in one batch of jobs; the best score wins, ties keeping
    the first stage's point. The new points join the selection's ``scores``.

    Example:
      >>> first = Selection({"learning_rate": 0.1}, 1.0, False, (0.1,), [])
      >>> score = lambda points: [0.5 if hp.get("n_ref") == 2 else 2.0 for _, hp in points]
      >>> refine({"p": first}, ["p"], "n_ref", (1, 2, 5), score, default=1)["p"].hparams
      {'learning_rate': 0.1, 'n_ref': 2}
    """
    out = dict(selections)
    todo = []
    for label in labels:
        hp = selections[label].hparams
        for value in values:
            if value != hp.get(name, default):
                point = {k: v for k, v in hp.items() if k != name}
                if value != default:
                    point[name] = value
                todo.append((label, point))
    scored = [_finite(float(s)) for s in score(todo)] if todo else []
    for (label, point), s in zip(todo, scored, strict=True):
        sel = out[label]
        better = s < sel.score
        out[label] = dataclasses.replace(
            sel,
            hparams=point if better else sel.hparams,
            score=s if better else sel.score,
            scores=[*sel.scores, {"hparams": point, "score": s}],
        )
    return out


# --- Reporting: the same for every suite ------------------------------------------------

METRICS = ("old", "new", "mean")


def is_profit(method: str) -> bool:
    """Whether a registry method is a PROFIT variant (compared against the best baseline)."""
    return method.startswith("profit")


def hparams_text(hp: Mapping[str, Any]) -> str:
    """A selected point as the tables show it.

    Example:
      >>> hparams_text({"learning_rate": 5e-4, "ref_ratio": None, "n_ref": 2})
      'lr 0.0005, λ ratio auto, n_ref 2'
    """
    parts = [f"lr {hp['learning_rate']:.3g}"]
    if "ref_ratio" in hp:
        parts.append("λ ratio " + ("auto" if hp["ref_ratio"] is None else f"{hp['ref_ratio']:g}"))
    if "n_ref" in hp:
        parts.append(f"n_ref {hp['n_ref']}")
    if "ref_learning_rate" in hp:
        r = hp["ref_learning_rate"]
        parts.append("λ_ref " + ("auto" if r is None else f"{r:g}"))
    return ", ".join(parts)


def metric(split: Mapping[str, Any], key: str) -> float:
    """``old``, ``new`` or their ``mean`` from an ``{"old", "new"}`` record (NaN if missing)."""
    if key == "mean":
        return (metric(split, "old") + metric(split, "new")) / 2
    value = split[key]
    return math.nan if value is None else float(value)


def summarize(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and standard error over seeds of the test and validation old/new/mean metric."""
    from experiments.common.results import mean_se

    out: dict[str, Any] = {"n": len(runs)}
    for split in ("test", "val"):
        for key in METRICS:
            vals = [metric(r[split], key) for r in runs]
            out[f"{split}_{key}_mean"], out[f"{split}_{key}_se"] = mean_se(vals)
    return out


def attach_runs(
    rows: Mapping[str, dict[str, Any]], seeds: Sequence[int], records: Sequence[Mapping]
) -> None:
    """Gives each row its ``runs`` (``records`` in row-major order, one per seed) and summary."""
    n = len(seeds)
    for i, row in enumerate(rows.values()):
        row["runs"] = [{"seed": s, **records[i * n + j]} for j, s in enumerate(seeds)]
        row["summary"] = summarize(row["runs"])


def best_baseline(selections: Mapping[str, Selection], methods: Mapping[str, str]) -> str:
    """The non-PROFIT label with the best (lowest) validation score; ``methods``: label ->
    registry method."""
    baselines = [k for k in selections if not is_profit(methods[k])]
    return min(baselines, key=lambda k: selections[k].score)


def paired_to(
    rows: Mapping[str, Mapping[str, Any]], baseline: str, labels: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """Each of ``labels`` minus ``baseline``, paired over seeds on the test metrics."""
    from experiments.common.results import paired_difference

    base = rows[baseline]["runs"]
    return {
        label: {
            key: paired_difference(
                [metric(r["test"], key) for r in rows[label]["runs"]],
                [metric(r["test"], key) for r in base],
            )
            for key in METRICS
        }
        for label in labels
    }


def word(diff: Mapping[str, float], *, lower_is_better: bool) -> str:
    """``better`` / ``worse`` (for the first of a paired difference) when its 95% interval
    excludes 0, else ``no different``."""
    lo, hi = diff["lo"], diff["hi"]
    if lo is None or hi is None or math.isnan(lo) or math.isnan(hi) or lo <= 0 <= hi:
        return "no different"
    return "better" if (hi < 0 if lower_is_better else lo > 0) else "worse"
