"""The grid of a λ_ref sweep: fixed reference learning rates, automatic-rule ``ref_scale``s.

A sweep compares, for one PROFIT main optimizer and learning rate λ_main,

* a grid of **fixed** reference learning rates λ_ref (explicit ``optax.sgd(λ_ref)``
  reference, registry hparam ``ref_learning_rate``), and
* the **automatic** reference step (``ref_learning_rate=None``) at several
  ``ref_scale`` values, one of which is the core's default,

from the same pretrained model, with the same seeds (batch order) and the same number of
update calls.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any


def default_ref_scale() -> float:
    """The core's default ``ref_scale`` (``profit_optax.DEFAULT_REF_SCALE``)."""
    import profit_optax

    return float(profit_optax.DEFAULT_REF_SCALE)


def variant(name: str, *, x64: bool, quick: bool) -> str:
    """Output name of a sweep: ``<name>[_x64][_quick]``."""
    return name + ("_x64" if x64 else "") + ("_quick" if quick else "")


@dataclasses.dataclass(frozen=True)
class Point:
    """One sweep setting of one PROFIT method.

    Attributes:
      method: registry name (``"profit"`` or ``"profit_sgd"``).
      kind: ``"fixed"`` (explicit SGD reference, ``value`` = λ_ref) or ``"auto"`` (automatic
        reference step, ``value`` = ``ref_scale``).
      value: λ_ref or ``ref_scale``.
    """

    method: str
    kind: str
    value: float

    @property
    def label(self) -> str:
        what = "lambda_ref" if self.kind == "fixed" else "ref_scale"
        return f"{self.method}/{self.kind}/{what}={self.value:.3g}"

    def hparams(self, base: Mapping[str, Any]) -> dict[str, Any]:
        """Registry hparams: the task's ``base`` (learning rate, ...) plus the reference setting."""
        hp = {k: v for k, v in base.items() if k not in ("ref_learning_rate", "ref_scale")}
        if self.kind == "fixed":
            return {**hp, "ref_learning_rate": float(self.value)}
        return {**hp, "ref_learning_rate": None, "ref_scale": float(self.value)}


def make_points(
    methods: Mapping[str, Mapping[str, Any]],
    ratios: Sequence[float],
    ref_scales: Sequence[float],
) -> list[Point]:
    """Fixed λ_ref = ratio × λ_main for each ratio, and the automatic rule at each ``ref_scale``
    (the default ``ref_scale`` is always included)."""
    scales = sorted({*map(float, ref_scales), default_ref_scale()})
    points = []
    for name, base in methods.items():
        lr = float(base["learning_rate"])
        points += [Point(name, "fixed", lr * float(r)) for r in sorted(ratios, reverse=True)]
        points += [Point(name, "auto", s) for s in scales]
    return points


def priority_order(
    points: Sequence[Point], methods: Mapping[str, Mapping[str, Any]]
) -> list[Point]:
    """Run order for an expensive sweep that may have to stop early: per method, the automatic
    rule at the default ``ref_scale`` first, then fixed λ_ref by distance (log) from the paper's
    λ_main/100, then the other ``ref_scale`` values."""
    dflt = default_ref_scale()

    def key(p: Point) -> tuple:
        lr = float(methods[p.method]["learning_rate"])
        if p.kind == "auto":
            rank = (0, 0.0) if math.isclose(p.value, dflt) else (2, abs(math.log10(p.value / dflt)))
        else:
            rank = (1, abs(math.log10(p.value / (lr / 100))))
        return (*rank, p.value)

    return sorted(points, key=key)
