"""Detection metrics for hemoscan models, pure numpy (no torch, no OpenCV).

Box convention everywhere: ``x1, y1, x2, y2`` float pixels of the evaluated image, origin at the
top-left corner, x to the right, y down (the convention of :mod:`hemoscan.datamodel`). Arrays
are ``boxes float [N, 4]``, ``scores float [N]``, ``labels int [N]`` (indices into a class list
the caller chooses). Predictions and truths are given per image, in the same frame.

What is measured, and how:

- **Matching** (:func:`match_class`) follows COCO (``pycocotools.cocoeval``) exactly: per image
  and class, predictions are taken by descending score (stable), each takes the unmatched truth
  box with the highest IoU >= the IoU threshold (ties: the later box); a prediction that matches
  no truth box but overlaps an *ignore region* by ``intersection / prediction area`` >= the
  threshold is ignored (neither true nor false positive), as COCO does for crowd boxes. Classes
  that an image does not supervise (a positives-only, partially labelled image) are skipped for
  that image: neither its boxes nor its predictions count. There is no cap on predictions per
  image (COCO keeps 100; a blood field holds more cells than that), unless ``max_dets`` is set.
- **AP** (:func:`average_precision_101`): COCO's 101-point interpolated average precision:
  the mean over recall levels 0, 0.01, ..., 1 of the highest precision at that recall or more.
  ``AP50`` at IoU 0.5, ``AP50:95`` the mean over IoU 0.50, 0.55, ..., 0.95. NaN when the class
  has no truth box in the images that supervise it. Cross-checked against pycocotools in tests.
- **Precision / recall at a threshold** (:func:`at_threshold`): the predictions with score >=
  the threshold, matched at IoU 0.5. Greedy matching by score makes the matches of that subset
  the same as those of the full run, so every threshold is read off one matching.
- **Threshold tuning** (:func:`tune_threshold`): over the grid 0.05, 0.06, ..., 0.95, rule
  ``f1``: the threshold with the highest F1 (ties: the higher threshold); rule
  ``recall_at_fp``: the lowest threshold whose false positives per image are at most
  ``max_fp_per_tile``, i.e. the best sensitivity that meets the false-alarm target (if no grid
  threshold meets it, the highest grid value, flagged ``feasible=False``).
- **Hemophagocytes** (:func:`hemophagocyte_metrics`): true and predicted hemophagocytes are
  matched like above at IoU 0.5 (class ``hemophagocyte`` only: a true hemophagocyte called
  ``macrophage`` is a miss, counted apart). Sensitivity = TP / true, precision = TP / (TP + FP),
  false positives per tile = FP / tiles. Engulfed types, for matched hemophagocytes only:
  ``engulfed_exact`` is the fraction whose predicted engulfed-type counts (rbc / nucleated /
  platelet; granulocyte, erythroblast and lymphocyte count as nucleated) equal the truth's
  exactly; per engulfed cell, predicted and true cells of a matched pair are matched by IoU >=
  ``engulfed_iou`` regardless of type, and ``cell_type_accuracy`` is the fraction of those
  cell pairs whose type agrees (``cell_recall``: matched true cells / true cells).
- **Count agreement** (:func:`count_agreement`): per sample, hemophagocytes per 1000 nucleated
  cells (nucleated + macrophage + hemophagocyte, as ``hemoscan scan`` reports it) from the
  truth and from the predictions; over the samples where both are defined: the pairs, the
  mean absolute difference, and Bland-Altman bias (mean of predicted - true) with 95% limits
  of agreement (bias +- 1.96 SD of the differences).
- **Nested / duplicate boxes** (:func:`nested_pairs`): pairs of boxes of one image whose
  intersection covers more than half of the smaller box: one cell boxed twice, or a box inside
  another (a nucleus boxed inside its cell). Counted over a class's operating-point predictions,
  each such pair inflates the count that every rate is taken over.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from hemoscan.datamodel import NUCLEATED_SUBTYPES

#: COCO's IoU thresholds for AP50:95 and its 101 recall levels.
COCO_IOUS: np.ndarray = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1)
RECALL_LEVELS: np.ndarray = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1)
#: Thresholds tried by :func:`tune_threshold`.
THRESHOLD_GRID: np.ndarray = np.round(np.arange(0.05, 0.9501, 0.01), 2)
#: Engulfed types compared by the engulfed-type metrics (subtypes count as nucleated).
ENGULFED_BASE_TYPES: tuple[str, ...] = ("rbc", "nucleated", "platelet")

_EMPTY_BOXES = np.zeros((0, 4), np.float32)


def _boxes(value: object, what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{what} must have shape [N, 4] (x1, y1, x2, y2), got {arr.shape}")
    return arr


def _vector(value: object, n: int, dtype: type, what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=dtype).reshape(-1)
    if len(arr) != n:
        raise ValueError(f"{what} has {len(arr)} entries for {n} boxes")
    return arr


# --------------------------------------------------------------------------- records
@dataclass(frozen=True)
class ImageDetections:
    """One image's predictions: ``boxes [N, 4]`` (x1, y1, x2, y2 px), ``scores [N]``, ``labels [N]``."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray

    def __post_init__(self) -> None:
        boxes = _boxes(self.boxes, "ImageDetections.boxes")
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(
            self, "scores", _vector(self.scores, len(boxes), np.float64, "ImageDetections.scores")
        )
        object.__setattr__(
            self, "labels", _vector(self.labels, len(boxes), np.int64, "ImageDetections.labels")
        )


@dataclass(frozen=True)
class ImageTruth:
    """One image's truth: ``boxes [N, 4]`` (x1, y1, x2, y2 px) and ``labels [N]``.

    ``ignore [M, 4]``: regions where predictions are not counted (crowds, unlabelled areas);
    ``ignore_labels [M]``: the class each region applies to, ``-1`` for every class (the default
    when left empty). ``unsupervised``: classes this image does not label exhaustively
    (positives only): the image is left out of those classes' metrics.
    """

    boxes: np.ndarray
    labels: np.ndarray
    ignore: np.ndarray = field(default_factory=lambda: _EMPTY_BOXES)
    ignore_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    unsupervised: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        boxes = _boxes(self.boxes, "ImageTruth.boxes")
        set_ = object.__setattr__
        set_(self, "boxes", boxes)
        set_(self, "labels", _vector(self.labels, len(boxes), np.int64, "ImageTruth.labels"))
        ignore = _boxes(self.ignore, "ImageTruth.ignore")
        set_(self, "ignore", ignore)
        ig_labels = np.asarray(self.ignore_labels, np.int64).reshape(-1)
        if len(ig_labels) == 0:
            ig_labels = np.full(len(ignore), -1, np.int64)
        set_(self, "ignore_labels", _vector(ig_labels, len(ignore), np.int64, "ignore_labels"))
        set_(self, "unsupervised", frozenset(int(c) for c in self.unsupervised))


# --------------------------------------------------------------------------- geometry
def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``[len(a), len(b)]`` of two ``[N, 4]`` box arrays (x1, y1, x2, y2)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    inter = _intersection(a, b)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    area_b = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    union = area_a[:, None] + area_b[None] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _intersection(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    return np.prod(np.clip(rb - lt, 0, None), axis=2)


def ioa(a: np.ndarray, regions: np.ndarray) -> np.ndarray:
    """Intersection over the area of each ``a`` box, ``[len(a), len(regions)]`` (COCO's crowd IoU)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    regions = np.asarray(regions, np.float64).reshape(-1, 4)
    inter = _intersection(a, regions)
    area_a = np.prod(np.clip(a[:, 2:] - a[:, :2], 0, None), axis=1)
    return np.where(area_a[:, None] > 0, inter / np.maximum(area_a[:, None], 1e-300), 0.0)


def nested_pairs(boxes: np.ndarray, min_overlap: float = 0.5) -> int:
    """The number of pairs of ``boxes [N, 4]`` (x1, y1, x2, y2 px) whose intersection is more
    than ``min_overlap`` of the smaller box's area (boxes without area pair with nothing)."""
    b = _boxes(boxes, "boxes")
    area = np.prod(np.clip(b[:, 2:] - b[:, :2], 0, None), axis=1)
    smaller = np.minimum(area[:, None], area[None])
    inter = _intersection(b, b)
    nested = (smaller > 0) & (inter > min_overlap * smaller)
    return int(np.triu(nested, k=1).sum())


def _last_argmax(values: np.ndarray) -> int:
    """Index of the maximum, the last one on ties (pycocotools' loop keeps the later box)."""
    return len(values) - 1 - int(np.argmax(values[::-1]))


def greedy_match(
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    gt_boxes: np.ndarray,
    iou_threshold: float,
    ignore: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """COCO matching of one image and class.

    Returns ``(order, matched_gt, ignored)``: ``order`` sorts the predictions by descending score
    (stable); for the prediction ``order[i]``, ``matched_gt[i]`` is the truth index it matched or
    ``-1``, and ``ignored[i]`` is True when it fell on an ignore region instead.
    """
    det_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(det_scores, np.float64), kind="stable")
    matched = np.full(len(order), -1, np.int64)
    ignored = np.zeros(len(order), bool)
    if not len(order):
        return order, matched, ignored
    thr = min(iou_threshold, 1 - 1e-10)
    iou = box_iou(det_boxes[order], gt_boxes)
    crowd = (
        ioa(det_boxes[order], ignore)
        if ignore is not None and len(ignore)
        else np.zeros((len(order), 0))
    )
    taken = np.zeros(len(gt_boxes), bool)
    for i in range(len(order)):
        if len(gt_boxes):
            cand = np.where(taken, -1.0, iou[i])
            j = _last_argmax(cand)
            if cand[j] >= thr:
                taken[j] = True
                matched[i] = j
                continue
        if crowd.shape[1] and crowd[i].max() >= thr:
            ignored[i] = True
    return order, matched, ignored


# --------------------------------------------------------------------------- per-class curves
@dataclass(frozen=True)
class ClassCurve:
    """All predictions of one class over a set of images, matched at one IoU threshold.

    ``scores`` (descending) and ``tp`` hold the counted (not ignored) predictions in COCO's
    order; ``n_gt`` is the number of truth boxes and ``n_images`` the number of images that
    supervise the class.
    """

    label: int
    iou_threshold: float
    scores: np.ndarray
    tp: np.ndarray
    n_gt: int
    n_images: int

    def counts_at(self, threshold: float) -> tuple[int, int, int]:
        """``(tp, fp, fn)`` of the predictions scoring >= ``threshold``."""
        k = int(np.searchsorted(-self.scores, -threshold, side="right"))
        tp = int(self.tp[:k].sum())
        return tp, k - tp, self.n_gt - tp


def match_class(
    preds: Sequence[ImageDetections],
    truths: Sequence[ImageTruth],
    label: int,
    iou_threshold: float = 0.5,
    max_dets: int | None = None,
) -> ClassCurve:
    """Match the predictions of class ``label`` to its truth over a set of images (see module)."""
    if len(preds) != len(truths):
        raise ValueError(f"{len(preds)} prediction sets for {len(truths)} truths")
    scores: list[np.ndarray] = []
    hits: list[np.ndarray] = []
    n_gt = n_images = 0
    for pred, truth in zip(preds, truths):
        if label in truth.unsupervised:
            continue
        n_images += 1
        pk = pred.labels == label
        boxes, sc = pred.boxes[pk], pred.scores[pk]
        order = np.argsort(-sc, kind="stable")
        if max_dets is not None:
            order = order[:max_dets]
        boxes, sc = boxes[order], sc[order]
        gt = truth.boxes[truth.labels == label]
        n_gt += len(gt)
        ig = truth.ignore[(truth.ignore_labels == label) | (truth.ignore_labels == -1)]
        _, matched, ignored = greedy_match(boxes, sc, gt, iou_threshold, ig)
        # greedy_match sorted the already-sorted scores stably: the order is unchanged
        scores.append(sc[~ignored])
        hits.append(matched[~ignored] >= 0)
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    all_hits = np.concatenate(hits) if hits else np.zeros(0, bool)
    order = np.argsort(-all_scores, kind="mergesort")
    return ClassCurve(label, iou_threshold, all_scores[order], all_hits[order], n_gt, n_images)


def average_precision_101(curve: ClassCurve) -> float:
    """COCO's 101-point interpolated AP of one curve; NaN without truth boxes."""
    if curve.n_gt == 0:
        return float("nan")
    if not len(curve.scores):
        return 0.0
    tp = np.cumsum(curve.tp, dtype=np.float64)
    fp = np.cumsum(~curve.tp, dtype=np.float64)
    recall = tp / curve.n_gt
    precision = tp / (tp + fp + np.spacing(1))
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, RECALL_LEVELS, side="left")
    q = np.where(idx < len(precision), precision[np.minimum(idx, len(precision) - 1)], 0.0)
    return float(q.mean())


def class_ap(
    preds: Sequence[ImageDetections],
    truths: Sequence[ImageTruth],
    label: int,
    iou_threshold: float = 0.5,
) -> float:
    """COCO AP (101-point) of one class at one IoU threshold; NaN when it has no truth boxes."""
    return average_precision_101(match_class(preds, truths, label, iou_threshold))


def ap_per_class(
    preds: Sequence[ImageDetections],
    truths: Sequence[ImageTruth],
    labels: Mapping[str, int],
    iou_threshold: float = 0.5,
) -> dict[str, float]:
    """``{class name: AP}`` at one IoU threshold for the named label indices."""
    return {name: class_ap(preds, truths, k, iou_threshold) for name, k in labels.items()}


@dataclass(frozen=True)
class ClassAP:
    """COCO AP of one class: ``ap50``, ``ap75`` and ``ap50_95`` (NaN without truth boxes)."""

    label: str
    ap50: float
    ap75: float
    ap50_95: float
    n_gt: int
    n_pred: int
    n_images: int


def coco_ap(
    preds: Sequence[ImageDetections],
    truths: Sequence[ImageTruth],
    labels: Mapping[str, int],
    max_dets: int | None = None,
) -> dict[str, ClassAP]:
    """AP50, AP75 and AP50:95 per named class (``{name: label index}``)."""
    out = {}
    for name, k in labels.items():
        curves = [match_class(preds, truths, k, float(t), max_dets) for t in COCO_IOUS]
        aps = np.array([average_precision_101(c) for c in curves])
        first = curves[0]
        out[name] = ClassAP(
            label=name,
            ap50=float(aps[0]),
            ap75=float(aps[5]),
            ap50_95=float(aps.mean()),
            n_gt=first.n_gt,
            n_pred=len(first.scores),
            n_images=first.n_images,
        )
    return out


# --------------------------------------------------------------------------- operating point
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
            f"lowest threshold with false positives per tile <= {self.max_fp_per_tile:g} "
            "(best sensitivity meeting the target)"
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
    return TunedThreshold(ok[0].label, ok[0].threshold, rule.describe(), ok[0], True, rule.short())


# --------------------------------------------------------------------------- hemophagocytes
@dataclass(frozen=True)
class EngulfedBox:
    """An engulfed cell: its type (``rbc``, ``nucleated``, ``platelet`` or a nucleated subtype)
    and box (x1, y1, x2, y2 px)."""

    label: str
    box: tuple[float, float, float, float]
    score: float = 1.0


@dataclass(frozen=True)
class HostBox:
    """A hemophagocyte (true or predicted): its box (x1, y1, x2, y2 px), score and engulfed cells."""

    box: tuple[float, float, float, float]
    engulfed: tuple[EngulfedBox, ...] = ()
    score: float = 1.0

    def type_counts(self) -> dict[str, int]:
        """Engulfed cells per base type; nucleated subtypes count as ``nucleated``."""
        counts = dict.fromkeys(ENGULFED_BASE_TYPES, 0)
        for cell in self.engulfed:
            base = base_engulfed_type(cell.label)
            counts[base] = counts.get(base, 0) + 1
        return counts


def base_engulfed_type(label: str) -> str:
    """``granulocyte`` / ``erythroblast`` / ``lymphocyte`` -> ``nucleated``; others unchanged."""
    return "nucleated" if label in NUCLEATED_SUBTYPES else label


@dataclass(frozen=True)
class HostTile:
    """One tile's hemophagocytes: ``truth`` and ``preds``; ``ignore [M, 4]`` regions;
    optional true macrophage boxes and predicted macrophage boxes ``[K, 4]`` for the
    confusion counts (a host is one physical cell called either way)."""

    truth: tuple[HostBox, ...]
    preds: tuple[HostBox, ...]
    ignore: np.ndarray = field(default_factory=lambda: _EMPTY_BOXES)
    true_macrophages: np.ndarray = field(default_factory=lambda: _EMPTY_BOXES)
    pred_macrophages: np.ndarray = field(default_factory=lambda: _EMPTY_BOXES)


@dataclass(frozen=True)
class HemophagocyteMetrics:
    """Hemophagocyte detection and engulfed-type metrics over a set of tiles (see module).

    Rates are None where their denominator is zero.
    """

    tiles: int
    true: int
    predicted: int
    tp: int
    fp: int
    fn: int
    fp_on_true_macrophages: int
    missed_called_macrophage: int
    matched_with_exact_engulfed: int
    true_cells_in_matched: int
    pred_cells_in_matched: int
    cell_pairs: int
    cell_pairs_same_type: int
    cell_confusion: dict[str, dict[str, int]]

    @property
    def sensitivity(self) -> float | None:
        return self.tp / self.true if self.true else None

    @property
    def precision(self) -> float | None:
        return self.tp / (self.tp + self.fp) if self.tp + self.fp else None

    @property
    def fp_per_tile(self) -> float | None:
        return self.fp / self.tiles if self.tiles else None

    @property
    def engulfed_exact(self) -> float | None:
        return self.matched_with_exact_engulfed / self.tp if self.tp else None

    @property
    def cell_type_accuracy(self) -> float | None:
        return self.cell_pairs_same_type / self.cell_pairs if self.cell_pairs else None

    @property
    def cell_recall(self) -> float | None:
        return self.cell_pairs / self.true_cells_in_matched if self.true_cells_in_matched else None

    def to_dict(self) -> dict[str, object]:
        return {
            "tiles": self.tiles,
            "true": self.true,
            "predicted": self.predicted,
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "sensitivity": self.sensitivity,
            "precision": self.precision,
            "fp_per_tile": self.fp_per_tile,
            "fp_on_true_macrophages": self.fp_on_true_macrophages,
            "missed_called_macrophage": self.missed_called_macrophage,
            "engulfed_exact": self.engulfed_exact,
            "engulfed_exact_n": f"{self.matched_with_exact_engulfed}/{self.tp}",
            "engulfed_cell_type_accuracy": self.cell_type_accuracy,
            "engulfed_cell_recall": self.cell_recall,
            "engulfed_cells": {
                "true_in_matched": self.true_cells_in_matched,
                "predicted_in_matched": self.pred_cells_in_matched,
                "pairs": self.cell_pairs,
                "pairs_same_type": self.cell_pairs_same_type,
                "confusion_true_to_predicted": self.cell_confusion,
            },
        }


def _host_boxes(hosts: Sequence[HostBox]) -> np.ndarray:
    return np.array([h.box for h in hosts], np.float64).reshape(-1, 4)


def hemophagocyte_metrics(
    tiles: Sequence[HostTile], iou_threshold: float = 0.5, engulfed_iou: float = 0.5
) -> HemophagocyteMetrics:
    """Hemophagocyte sensitivity, precision, false positives per tile and engulfed-type
    agreement over ``tiles`` (see the module docstring for the definitions)."""
    true = predicted = tp = fp = fn = fp_macro = miss_macro = exact = 0
    true_cells = pred_cells = pairs = same = 0
    confusion: dict[str, dict[str, int]] = {
        t: dict.fromkeys((*ENGULFED_BASE_TYPES, "missed"), 0) for t in ENGULFED_BASE_TYPES
    }
    for tile in tiles:
        gt = _host_boxes(tile.truth)
        pb = _host_boxes(tile.preds)
        scores = np.array([h.score for h in tile.preds], np.float64)
        order, matched, ignored = greedy_match(pb, scores, gt, iou_threshold, tile.ignore)
        true += len(gt)
        predicted += int((~ignored).sum())
        hit_gt = set()
        for i, k in enumerate(order):
            if ignored[i]:
                continue
            if matched[i] < 0:
                fp += 1
                if len(tile.true_macrophages) and (
                    box_iou(pb[k], tile.true_macrophages).max() >= iou_threshold
                ):
                    fp_macro += 1
                continue
            tp += 1
            j = int(matched[i])
            hit_gt.add(j)
            p, t = tile.preds[k], tile.truth[j]
            exact += int(p.type_counts() == t.type_counts())
            tc = np.array([c.box for c in t.engulfed], np.float64).reshape(-1, 4)
            pc = np.array([c.box for c in p.engulfed], np.float64).reshape(-1, 4)
            true_cells += len(tc)
            pred_cells += len(pc)
            cell_order, cm, _ = greedy_match(pc, [c.score for c in p.engulfed], tc, engulfed_iou)
            paired = set()
            for a, b in zip(cell_order, cm):
                if b < 0:
                    continue
                pairs += 1
                paired.add(int(b))
                tt = base_engulfed_type(t.engulfed[int(b)].label)
                pt = base_engulfed_type(p.engulfed[int(a)].label)
                same += int(tt == pt)
                row = confusion.setdefault(tt, dict.fromkeys((*ENGULFED_BASE_TYPES, "missed"), 0))
                row[pt] = row.get(pt, 0) + 1
            for b, cell in enumerate(t.engulfed):
                if b not in paired:
                    tt = base_engulfed_type(cell.label)
                    row = confusion.setdefault(
                        tt, dict.fromkeys((*ENGULFED_BASE_TYPES, "missed"), 0)
                    )
                    row["missed"] += 1
        for j in range(len(gt)):
            if j in hit_gt:
                continue
            fn += 1
            if len(tile.pred_macrophages) and (
                box_iou(gt[j], tile.pred_macrophages).max() >= iou_threshold
            ):
                miss_macro += 1
    return HemophagocyteMetrics(
        tiles=len(tiles),
        true=true,
        predicted=predicted,
        tp=tp,
        fp=fp,
        fn=fn,
        fp_on_true_macrophages=fp_macro,
        missed_called_macrophage=miss_macro,
        matched_with_exact_engulfed=exact,
        true_cells_in_matched=true_cells,
        pred_cells_in_matched=pred_cells,
        cell_pairs=pairs,
        cell_pairs_same_type=same,
        cell_confusion=confusion,
    )


# --------------------------------------------------------------------------- count agreement
@dataclass(frozen=True)
class SampleCount:
    """One sample's hemophagocyte and nucleated-cell counts, true and predicted."""

    sample: str
    true_hemophagocytes: int
    true_nucleated: int
    pred_hemophagocytes: int
    pred_nucleated: int

    @property
    def true_per_1000(self) -> float | None:
        return (
            1000 * self.true_hemophagocytes / self.true_nucleated if self.true_nucleated else None
        )

    @property
    def pred_per_1000(self) -> float | None:
        return (
            1000 * self.pred_hemophagocytes / self.pred_nucleated if self.pred_nucleated else None
        )


@dataclass(frozen=True)
class CountAgreement:
    """Agreement of per-sample hemophagocytes per 1000 nucleated cells, predicted vs true.

    ``pairs`` holds ``(sample, true, predicted)`` for every sample where both are defined;
    ``bias`` is the mean of predicted - true, ``limits`` bias +- 1.96 SD (None below 2 pairs).
    """

    samples: tuple[SampleCount, ...]
    pairs: tuple[tuple[str, float, float], ...]
    mean_abs_difference: float | None
    bias: float | None
    sd: float | None
    limits: tuple[float, float] | None

    def to_dict(self) -> dict[str, object]:
        return {
            "samples": len(self.samples),
            "pairs_n": len(self.pairs),
            "pairs": [
                {"sample": s, "true_per_1000": t, "pred_per_1000": p} for s, t, p in self.pairs
            ],
            "counts": [
                {
                    "sample": s.sample,
                    "true_hemophagocytes": s.true_hemophagocytes,
                    "true_nucleated": s.true_nucleated,
                    "pred_hemophagocytes": s.pred_hemophagocytes,
                    "pred_nucleated": s.pred_nucleated,
                }
                for s in self.samples
            ],
            "mean_abs_difference": self.mean_abs_difference,
            "bias": self.bias,
            "sd": self.sd,
            "limits_of_agreement": list(self.limits) if self.limits else None,
        }


def count_agreement(samples: Sequence[SampleCount]) -> CountAgreement:
    """Per-sample count agreement of hemophagocytes per 1000 nucleated cells (see module)."""
    pairs = tuple(
        (s.sample, float(s.true_per_1000), float(s.pred_per_1000))  # type: ignore[arg-type]
        for s in samples
        if s.true_per_1000 is not None and s.pred_per_1000 is not None
    )
    if not pairs:
        return CountAgreement(tuple(samples), (), None, None, None, None)
    diff = np.array([p - t for _, t, p in pairs])
    bias = float(diff.mean())
    sd = float(diff.std(ddof=1)) if len(diff) >= 2 else None
    limits = (bias - 1.96 * sd, bias + 1.96 * sd) if sd is not None else None
    return CountAgreement(tuple(samples), pairs, float(np.abs(diff).mean()), bias, sd, limits)


def finite_or_none(value: float | None) -> float | None:
    """``value`` unless it is None or NaN (JSON has no NaN)."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value
