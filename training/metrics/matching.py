"""Matching predictions to truth (COCO's rules) and average precision, per class.

Records of one image (:class:`ImageDetections`, :class:`ImageTruth`), box geometry, greedy
matching, per-class curves and COCO AP; see :mod:`hemoscan_training.metrics` for the rules.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

#: COCO's IoU thresholds for AP50:95 and its 101 recall levels.
COCO_IOUS: np.ndarray = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1)
RECALL_LEVELS: np.ndarray = np.linspace(0.0, 1.0, int(np.round((1.0 - 0.0) / 0.01)) + 1)

EMPTY_BOXES = np.zeros((0, 4), np.float32)


def as_boxes(value: object, what: str) -> np.ndarray:
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
        boxes = as_boxes(self.boxes, "ImageDetections.boxes")
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
    ignore: np.ndarray = field(default_factory=lambda: EMPTY_BOXES)
    ignore_labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    unsupervised: frozenset[int] = frozenset()

    def __post_init__(self) -> None:
        boxes = as_boxes(self.boxes, "ImageTruth.boxes")
        set_ = object.__setattr__
        set_(self, "boxes", boxes)
        set_(self, "labels", _vector(self.labels, len(boxes), np.int64, "ImageTruth.labels"))
        ignore = as_boxes(self.ignore, "ImageTruth.ignore")
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
    b = as_boxes(boxes, "boxes")
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


@dataclass(frozen=True)
class ImageMatches:
    """The counted predictions of one class in one image that supervises it, matched at one
    IoU threshold: ``scores`` (descending), ``tp`` (bool) and ``n_gt`` truth boxes."""

    scores: np.ndarray
    tp: np.ndarray
    n_gt: int


def image_matches(
    preds: Sequence[ImageDetections],
    truths: Sequence[ImageTruth],
    label: int,
    iou_threshold: float = 0.5,
    max_dets: int | None = None,
) -> list[ImageMatches]:
    """Per image that supervises class ``label``, its predictions of it matched to its truth."""
    if len(preds) != len(truths):
        raise ValueError(f"{len(preds)} prediction sets for {len(truths)} truths")
    out = []
    for pred, truth in zip(preds, truths):
        if label in truth.unsupervised:
            continue
        pk = pred.labels == label
        boxes, sc = pred.boxes[pk], pred.scores[pk]
        order = np.argsort(-sc, kind="stable")
        if max_dets is not None:
            order = order[:max_dets]
        boxes, sc = boxes[order], sc[order]
        gt = truth.boxes[truth.labels == label]
        ig = truth.ignore[(truth.ignore_labels == label) | (truth.ignore_labels == -1)]
        _, matched, ignored = greedy_match(boxes, sc, gt, iou_threshold, ig)
        # greedy_match sorted the already-sorted scores stably: the order is unchanged
        out.append(ImageMatches(sc[~ignored], matched[~ignored] >= 0, len(gt)))
    return out


def match_class(
    preds: Sequence[ImageDetections],
    truths: Sequence[ImageTruth],
    label: int,
    iou_threshold: float = 0.5,
    max_dets: int | None = None,
) -> ClassCurve:
    """Match the predictions of class ``label`` to its truth over a set of images (see module)."""
    matches = image_matches(preds, truths, label, iou_threshold, max_dets)
    scores = np.concatenate([m.scores for m in matches]) if matches else np.zeros(0)
    hits = np.concatenate([m.tp for m in matches]) if matches else np.zeros(0, bool)
    order = np.argsort(-scores, kind="mergesort")
    n_gt = sum(m.n_gt for m in matches)
    return ClassCurve(label, iou_threshold, scores[order], hits[order], n_gt, len(matches))


def average_precision_101(curve: ClassCurve) -> float:
    """COCO's 101-point interpolated AP of one curve; NaN without truth boxes."""
    if curve.n_gt == 0:
        return float("nan")
    if not len(curve.scores):
        return 0.0
    return _ap_of_counts(
        np.cumsum(curve.tp, dtype=np.float64), np.cumsum(~curve.tp, dtype=np.float64), curve.n_gt
    )


def _ap_of_counts(tp: np.ndarray, fp: np.ndarray, n_gt: float) -> float:
    """101-point AP from the cumulative true and false positives down a ranked list."""
    recall = tp / n_gt
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


#: Resamples and seed of :func:`ap_interval` (fixed: the same run gives the same interval).
BOOTSTRAP_RESAMPLES = 1000
BOOTSTRAP_SEED = 0


def ap_interval(
    matches: Sequence[ImageMatches],
    level: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> tuple[float, float] | None:
    """Percentile bootstrap interval of a class's AP over its images: images are drawn with
    replacement (cells of one field are not independent: the field is the unit), the AP of
    each resample computed as :func:`average_precision_101`. The predictions are ranked once;
    a resample weighs each by how often its image was drawn. ``None`` under two images or
    without truth boxes."""
    n = len(matches)
    n_gt = np.array([m.n_gt for m in matches], np.float64)
    if n < 2 or not n_gt.sum():
        return None
    image = np.repeat(np.arange(n), [len(m.scores) for m in matches])
    order = np.argsort(-np.concatenate([m.scores for m in matches]), kind="mergesort")
    image, tp = image[order], np.concatenate([m.tp for m in matches])[order]
    rng = np.random.default_rng(seed)
    aps = []
    for _ in range(resamples):
        drawn = np.bincount(rng.integers(n, size=n), minlength=n).astype(np.float64)
        total = drawn @ n_gt
        if not total:
            continue
        weight = drawn[image]
        counted = weight > 0
        if not counted.any():
            aps.append(0.0)
            continue
        w, hit = weight[counted], tp[counted]
        aps.append(_ap_of_counts(np.cumsum(w * hit), np.cumsum(w * ~hit), total))
    if not aps:
        return None
    lo, hi = np.quantile(aps, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


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


def finite_or_none(value: float | None) -> float | None:
    """``value`` unless it is None or NaN (JSON has no NaN)."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value
