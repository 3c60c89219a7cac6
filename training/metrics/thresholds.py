"""Precision and recall at a threshold, and choosing a class's threshold by a rule."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from .matching import ClassCurve, ImageDetections, ImageTruth, match_class

#: Thresholds tried by :func:`tune_threshold`.
THRESHOLD_GRID: np.ndarray = np.round(np.arange(0.05, 0.9501, 0.01), 2)


@dataclass(frozen=True)
class OperatingPoint:
    """Counts and rates of one class's predictions scoring >= ``threshold`` (IoU 0.5 matching).

    ``precision`` is None without predictions and ``recall`` None without truth boxes.
    """

    label: str
    threshold: float
    tp: int
    fp: int
    fn: int
    n_images: int

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def recall(self) -> float | None:
        return self.tp / (self.tp + self.fn) if self.tp + self.fn else None

    @property
    def f1(self) -> float | None:
        denom = 2 * self.tp + self.fp + self.fn
        return 2 * self.tp / denom if denom else None

    @property
    def fp_per_image(self) -> float | None:
        return self.fp / self.n_images if self.n_images else None


def at_threshold(curve: ClassCurve, threshold: float, name: str = "") -> OperatingPoint:
    """Precision / recall of the predictions scoring >= ``threshold`` on one curve."""
    tp, fp, fn = curve.counts_at(threshold)
    return OperatingPoint(name or str(curve.label), float(threshold), tp, fp, fn, curve.n_images)


def precision_recall(
    preds: Sequence[ImageDetections],
    truths: Sequence[ImageTruth],
    label: int,
    threshold: float,
    iou_threshold: float = 0.5,
) -> OperatingPoint:
    """:func:`at_threshold` of a freshly matched class."""
    return at_threshold(match_class(preds, truths, label, iou_threshold), threshold)


# --------------------------------------------------------------------------- threshold tuning
@dataclass(frozen=True)
class TuningRule:
    """How one class's threshold is chosen (see :func:`tune_threshold`)."""

    objective: Literal["f1", "recall_at_fp"] = "f1"
    max_fp_per_tile: float | None = None

    def __post_init__(self) -> None:
        if self.objective not in ("f1", "recall_at_fp"):
            raise ValueError(f"unknown tuning objective {self.objective!r}")
        if self.objective == "recall_at_fp" and (
            self.max_fp_per_tile is None or self.max_fp_per_tile < 0
        ):
            raise ValueError("the recall_at_fp rule needs max_fp_per_tile >= 0")

    def short(self) -> str:
        """``max F1`` or ``FP/tile <= X``."""
        return "max F1" if self.objective == "f1" else f"FP/tile <= {self.max_fp_per_tile:g}"

    def describe(self) -> str:
        if self.objective == "f1":
            return "highest F1 (ties: higher threshold)"
        return (
            f"best sensitivity with false positives per tile <= {self.max_fp_per_tile:g} "
            "(ties: the highest threshold, so the fewest false positives)"
        )


@dataclass(frozen=True)
class TunedThreshold:
    """The chosen threshold of one class and its operating point on the tuning data."""

    label: str
    threshold: float
    rule: str
    point: OperatingPoint
    feasible: bool = True
    objective: str = ""


def tune_threshold(
    curve: ClassCurve,
    rule: TuningRule = TuningRule(),
    name: str = "",
    grid: Iterable[float] = THRESHOLD_GRID,
) -> TunedThreshold | None:
    """Pick a threshold for one class from its curve; None when the class has no truth boxes
    (nothing to tune on)."""
    if curve.n_gt == 0 or curve.n_images == 0:
        return None
    points = [at_threshold(curve, float(t), name) for t in grid]
    if rule.objective == "f1":
        best = max(points, key=lambda p: (p.f1 or 0.0, p.threshold))
        return TunedThreshold(
            best.label, best.threshold, rule.describe(), best, objective=rule.short()
        )
    limit = float(rule.max_fp_per_tile)  # type: ignore[arg-type]
    ok = [p for p in points if p.fp / curve.n_images <= limit + 1e-12]
    if not ok:
        worst = points[-1]
        return TunedThreshold(
            worst.label, worst.threshold, rule.describe(), worst, False, rule.short()
        )
    # Sensitivity often stays flat over a range of thresholds: the lowest of them would only
    # add false positives that the target allows but nothing needs.
    best = max(ok, key=lambda p: (p.tp, p.threshold))
    return TunedThreshold(best.label, best.threshold, rule.describe(), best, True, rule.short())
