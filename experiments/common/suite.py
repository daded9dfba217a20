"""The suite framework: a suite is its data, model and metric; :func:`run` is the protocol.

A suite (:class:`Suite`) says how to pretrain, how to build a registry method
(``experiments.methods``) for a label of its config, how one fine-tuning run goes
and what it measures (:class:`Metric`). :func:`run` is the same for every suite:

1. **Pretrain** (the suite's jobs, cached).
2. **Tune** every method of ``cfg.methods`` on the tuning seeds' validation splits
   (:func:`experiments.common.protocol.tune`; a best learning rate at a grid's edge
   widens the grid), then PROFIT's ``n_ref`` at each PROFIT row's point
   (``cfg.n_ref_grid``, a second stage). Score: the mean of the old and new
   validation metric, lower is better (negated for accuracy).
3. **Report** every method at its selected point on the reporting seeds (test read
   once, at the end), with the suite's extra rows (its paper's rows, ablations).
4. **Both budget views, one encoding.** Every row has a ``budget`` and its ``calls``:
   ``"grads"`` (equal gradient evaluations, ``cfg.finetune.budget`` update calls,
   the view every method is tuned in) or ``"main"`` (equal main steps: the row
   ``<label>@main`` of a method with several gradients per step, at the same
   hyper-parameters, for the labels of ``cfg.main_steps_rows``).
5. **Compare**: the best baseline (the non-PROFIT method with the best validation
   score), every compared row minus it, paired over the reporting seeds with 95%
   intervals; the plateau check of the best baseline's new-task validation curve.

The results dict (written as ``results.json`` by :mod:`experiments.common.suite_cli`)::

    name, config, spread, metric, pretrained,
    selection: {label: Selection},          # empty without tuning seeds (a demo)
    best_baseline, plateau, comparisons: {row: {"old", "new", "mean": paired difference}},
    rows: {row: {method, hparams, base?, budget, calls, compared, runs: [...], summary}},
    wall_time_s

Every run's record has ``val`` and ``test`` (``{"old", "new"}``), ``curve`` (points
with ``step``, ``val_old``, ``val_new``, and PROFIT's logged diagnostics) and
``calls``.

Adding a suite (``experiments/<suite>/``): a config (``name``, ``methods``: label ->
``{method, fixed, grid}``, ``finetune.budget`` and ``curve_points``, ``seeds``,
``tuning_seeds``, ``max_grid_widening``, optionally ``n_ref_grid`` and
``main_steps_rows``); a :class:`Suite` subclass with its :class:`Metric`, data, model,
pretraining and fine-tuning run (:func:`registry_method` and :func:`finetune_job` are
:meth:`Suite.build` and :meth:`Suite.job` for a constant learning rate, given the
suite's masks and cache-key context; ``experiments.common.train`` has the training loop,
the pretraining optimizer and PROFIT's diagnostics); a ``main.py`` calling
:func:`experiments.common.suite_cli.main` (its ``protocol_fn`` runs a study of the suite's
own instead of the protocol, e.g. the language model's pilot); and a line in
``experiments.verdict.SUITES`` naming its results folder and report module
(:mod:`experiments.common.tables` when it has no tables of its own; a folder without
``results.json`` yet is left out of the verdict and the report). Tuning, the budget
views, the comparison, the results file, the tables, the verdict rows and the
multi-process and sharded command line come with it.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
import numpy as np

from experiments.common import protocol, results

#: A fine-tuning run: (label, hparams, seed, split, calls).
Run = tuple[str, Mapping[str, Any], int, str, int]


@dataclasses.dataclass(frozen=True)
class Metric:
    """What a suite measures on the old and the new task, and how tables show it.

    Attributes:
      name: the metric in sentences ("accuracy", "MSE").
      unit: unit of a value in tables ("%", "MSE").
      diff_unit: unit of a difference in tables ("pts", "MSE").
      diff_text: a difference in sentences ("accuracy in points").
      scale: display factor (100 for accuracy in %).
      digits: decimals shown.
      lower_is_better: True for errors.
      plateau_tolerance: the best baseline has plateaued when its new-task validation
        metric improved by less than this over the last 30% of its run; None: no check.
    """

    name: str
    unit: str
    diff_unit: str
    diff_text: str
    scale: float
    digits: int
    lower_is_better: bool
    plateau_tolerance: float | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Suite(abc.ABC):
    """One configured suite: its config, runner (cache and shard) and metric.

    A subclass writes its data and model (:meth:`pretrain`, :meth:`finetune`), the
    method of a label (:meth:`build`), the cache key of a run (:meth:`job`) and
    optionally rows beyond the tuned ones (:meth:`extra_rows`).
    """

    metric: Metric

    def __init__(
        self, cfg: ml_collections.ConfigDict, runner: protocol.Runner, *, progress: bool = False
    ):
        self.cfg, self.runner, self.progress = cfg, runner, progress

    @abc.abstractmethod
    def pretrain(self) -> dict[str, Any]:
        """Runs (or reads) the pretraining jobs; returns the results' ``pretrained`` entry."""

    @abc.abstractmethod
    def build(self, label: str, hparams: Mapping[str, Any], calls: int) -> Any:
        """The registry method of ``label`` at ``hparams`` for a run of ``calls`` update calls."""

    @abc.abstractmethod
    def job(
        self, label: str, hparams: Mapping[str, Any], seed: int, split: str, calls: int
    ) -> dict[str, Any]:
        """The run's full configuration: its cache key."""

    @abc.abstractmethod
    def finetune(
        self, label: str, hparams: Mapping[str, Any], seed: int, split: str, calls: int
    ) -> dict[str, Any]:
        """One run's record (see the module docstring); ``test`` only when ``split`` is test."""

    def extra_rows(self, selections: Mapping[str, protocol.Selection]) -> dict[str, dict]:
        """Rows beyond the tuned ones (the suite's paper rows, ablations), with ``base``
        (the label whose spec they use), ``method``, ``hparams`` and ``compared``."""
        del selections
        return {}

    def finetune_all(self, runs: Sequence[Run]) -> list[dict[str, Any]]:
        """Records of ``runs`` (one sharded batch of cached jobs)."""
        jobs = [(self.job(*r), functools.partial(self.finetune, *r)) for r in runs]
        return self.runner.run_all(jobs)

    def criterion(self, record: Mapping[str, Any]) -> float:
        """Selection score of a run (lower is better): the mean of old and new validation
        metric, negated when higher is better; inf for a diverged run."""
        score = protocol.metric(record["val"], "mean")
        score = score if self.metric.lower_is_better else -score
        return score if math.isfinite(score) else math.inf


def registry_method(
    cfg: ml_collections.ConfigDict,
    label: str,
    hparams: Mapping[str, Any],
    params: Any,
    **masks: Any,
) -> Any:
    """The registry method of ``cfg.methods[label]`` at ``hparams`` over ``params``: its fixed
    hyper-parameters, the ``masks``, and for a method that warms up
    (``experiments.methods.warmup_kwargs``) ``cfg.finetune.warmup_fraction`` of the budget
    (also in the ``@main`` rows); a :meth:`Suite.build` for a constant learning rate."""
    from experiments import methods as registry

    spec, ft = cfg.methods[label], cfg.finetune
    kwargs = {**masks, **spec.fixed.to_dict(), **hparams}
    n_ref = hparams.get("n_ref", 1)
    kwargs.update(registry.warmup_kwargs(spec.method, ft.warmup_fraction, ft.budget, n_ref))
    return registry.make_method(spec.method, params, **kwargs)


def finetune_job(
    cfg: ml_collections.ConfigDict,
    context: Mapping[str, Any],
    label: str,
    hparams: Mapping[str, Any],
    seed: int,
    split: str,
    calls: int,
) -> dict[str, Any]:
    """A fine-tuning run's full configuration (its cache key, a :meth:`Suite.job`): the
    suite's ``context`` (pretraining, data, task), ``cfg.finetune``, the method, its fixed
    and tuned hyper-parameters, the seed and split; ``calls`` only when not the budget."""
    spec = cfg.methods[label]
    out = {
        **context,
        "job": "finetune",
        "finetune": cfg.finetune.to_dict(),
        "method": spec.method,
        "fixed": spec.fixed.to_dict(),
        "hparams": dict(hparams),
        "seed": seed,
        "split": split,
    }
    if calls != cfg.finetune.budget:
        out["calls"] = calls
    return out


def plateau(row: Mapping[str, Any], metric: Metric, tail: float = 0.3) -> dict[str, Any] | None:
    """The new-task validation metric over the last ``tail`` of a row's runs (mean over
    seeds): ``gain``, its improvement from the first point of that window to the end
    (raw units, positive = better), and whether it is below the metric's tolerance."""
    if metric.plateau_tolerance is None:
        return None
    curves = [
        [(p["step"], p["val_new"]) for p in r["curve"] if "val_new" in p] for r in row["runs"]
    ]
    steps = [s for s, _ in curves[0]]
    mean = np.mean([[v for _, v in c] for c in curves], axis=0)
    first = next(i for i, s in enumerate(steps) if s >= (1 - tail) * steps[-1])
    gain = float(mean[-1] - mean[first]) * (-1.0 if metric.lower_is_better else 1.0)
    return {"from_step": steps[first], "gain": gain, "plateaued": gain < metric.plateau_tolerance}


def _grid(spec: Any) -> dict[str, tuple]:
    return {k: tuple(v) for k, v in spec.grid.to_dict().items()}


def main_steps_twins(suite: Suite, rows: Mapping[str, Mapping[str, Any]]) -> dict[str, dict]:
    """The equal-main-steps view: ``<row>@main`` for every row whose label (its ``base``)
    is in ``cfg.main_steps_rows`` and whose method takes several gradients per main
    step, at the row's hyper-parameters with ``budget × gradients per step`` calls
    (ablation rows, ``ablation:...``, stay in the equal-gradients view)."""
    budget = int(suite.cfg.finetune.budget)
    out = {}
    for label in suite.cfg.get("main_steps_rows", ()):
        for name, row in rows.items():
            if row.get("base", name) != label or name.startswith("ablation:"):
                continue
            per_step = suite.build(label, row["hparams"], budget).grads_per_step
            if per_step > 1:
                out[f"{name}@main"] = {
                    **row,
                    "base": label,
                    "budget": "main",
                    "calls": budget * per_step,
                }
    return out


def run(suite: Suite) -> dict[str, Any]:
    """Runs every phase of the protocol (or reads it from the cache); the results dict."""
    cfg = suite.cfg
    seeds, tuning = tuple(cfg.seeds), tuple(cfg.tuning_seeds)
    budget = int(cfg.finetune.budget)
    start = time.perf_counter()
    out: dict[str, Any] = {
        "name": cfg.name,
        "config": cfg.to_dict(),
        "spread": results.SPREAD,
        "metric": suite.metric.to_json(),
        "pretrained": suite.pretrain(),
    }
    methods = {label: cfg.methods[label].method for label in cfg.methods}
    selections: dict[str, protocol.Selection] = {}
    if tuning:

        def score(points: Sequence[tuple[str, dict[str, Any]]]) -> list[float]:
            recs = suite.finetune_all(
                [(lb, hp, s, "val", budget) for lb, hp in points for s in tuning]
            )
            groups = [recs[i : i + len(tuning)] for i in range(0, len(recs), len(tuning))]
            return [float(np.mean([suite.criterion(r) for r in g])) for g in groups]

        grids = {label: _grid(spec) for label, spec in cfg.methods.items()}
        selections = protocol.tune(grids, score, max_widening=cfg.max_grid_widening)
        profit = [k for k in selections if protocol.is_profit(methods[k])]
        n_refs = tuple(cfg.get("n_ref_grid", ()))
        selections = protocol.refine(selections, profit, "n_ref", n_refs, score, default=1)
    out["selection"] = {k: v.to_json() for k, v in selections.items()}

    rows: dict[str, dict[str, Any]] = {
        label: {
            "method": methods[label],
            "hparams": sel.hparams,
            "budget": "grads",
            "calls": budget,
            "compared": protocol.is_profit(methods[label]),
        }
        for label, sel in selections.items()
    }
    for label, row in suite.extra_rows(selections).items():
        rows[label] = {"budget": "grads", "calls": budget, **row}
    rows.update(main_steps_twins(suite, rows))
    runs = [
        (row.get("base", label), row["hparams"], s, "test", row["calls"])
        for label, row in rows.items()
        for s in seeds
    ]
    protocol.attach_runs(rows, seeds, suite.finetune_all(runs))
    if selections:
        best = protocol.best_baseline(selections, methods)
        out["best_baseline"] = best
        out["plateau"] = plateau(rows[best], suite.metric)
        compared = [label for label, row in rows.items() if row["compared"]]
        out["comparisons"] = protocol.paired_to(rows, best, compared)
    out["rows"] = rows
    out["wall_time_s"] = time.perf_counter() - start
    return out
