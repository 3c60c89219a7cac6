"""COCO-style AP at one IoU threshold: greedy matching by score, all-point interpolation.

Arrays are numpy: boxes ``float [N, 4]`` as ``x1, y1, x2, y2``, scores ``float [N]``,
labels ``int [N]``. Predictions and ground truths are given per image, in the same frame.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ImageDetections:
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class ImageTruth:
    boxes: np.ndarray
    labels: np.ndarray


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``[len(a), len(b)]``."""
    a, b = a.reshape(-1, 4), b.reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None] - inter, 1e-9)


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """Area under the all-point interpolated precision-recall curve."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


def class_ap(
    preds: Sequence[ImageDetections],
    truths: Sequence[ImageTruth],
    label: int,
    iou_threshold: float = 0.5,
) -> float:
    """AP of one class over a set of images; NaN when the class has no ground truth."""
    n_gt = sum(int((t.labels == label).sum()) for t in truths)
    if n_gt == 0:
        return float("nan")
    records: list[tuple[float, bool]] = []
    for pred, truth in zip(preds, truths, strict=True):
        pk = pred.labels == label
        boxes, scores = pred.boxes[pk], pred.scores[pk]
        gt = truth.boxes[truth.labels == label]
        order = np.argsort(-scores, kind="stable")
        iou = box_iou(boxes[order], gt)
        taken = np.zeros(len(gt), bool)
        for i, k in enumerate(order):
            hit = False
            if len(gt):
                cand = np.where(taken, -1.0, iou[i])
                j = int(np.argmax(cand))
                if cand[j] >= iou_threshold:
                    taken[j] = hit = True
            records.append((float(scores[k]), hit))
    if not records:
        return 0.0
    records.sort(key=lambda r: -r[0])
    tp = np.cumsum([r[1] for r in records], dtype=np.float64)
    fp = np.cumsum([not r[1] for r in records], dtype=np.float64)
    return average_precision(tp / n_gt, tp / np.maximum(tp + fp, 1e-9))


def ap_per_class(
    preds: Sequence[ImageDetections],
    truths: Sequence[ImageTruth],
    labels: dict[str, int],
    iou_threshold: float = 0.5,
) -> dict[str, float]:
    """``{class name: AP}`` for the named label indices."""
    return {name: class_ap(preds, truths, k, iou_threshold) for name, k in labels.items()}
