"""Turn raw network outputs into :class:`~hemoscan.datamodel.Detection` records.

Arrays here are numpy: ``boxes float32 [N, 4]`` as ``x1, y1, x2, y2`` pixels, ``scores
float32 [N]``, ``labels int64 [N]`` indexing the model's ``classes``.

Everything is numpy, so that an ONNX scan imports neither torch nor torchvision (together
most of a scan's start-up): heatmaps are decoded as ``torch.sigmoid`` and a 3x3
``max_pool2d`` would decode them, and :func:`nms`, :func:`batched_nms` and :func:`box_iou`
compute what ``torchvision.ops`` computes in the same float32 arithmetic (tested against both).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from hemoscan.datamodel import ENGULFED_PREFIX, Detection, EngulfedCell

_BLOCK = 256  # rows of a pairwise-overlap block in the greedy suppressions

# Classes that are one physical kind of object for duplicate suppression: a host called both
# macrophage and hemophagocyte at the same place keeps only its higher-scoring call.
_SHARED_NMS_GROUPS = (("macrophage", "hemophagocyte"),)


def group_floors(thresholds: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    """``float32 [K]``: each class's score ``thresholds`` lowered to the lowest of its NMS
    group's (:func:`suppress_duplicates`).

    Peaks are decoded at these floors, suppressed, and only then held to their own class's
    threshold: a host scored higher as a macrophage than as a hemophagocyte is one object, a
    macrophage, even where its macrophage score then falls short of the macrophage threshold.
    Thresholding first would report its weaker hemophagocyte call instead, which the low-floor
    pass that evaluation and threshold tuning read never shows."""
    floors = np.asarray(thresholds, np.float32).copy()
    for group in _SHARED_NMS_GROUPS:
        members = [classes.index(c) for c in group if c in classes]
        if members:
            floors[members] = floors[members].min()
    return floors


def nms_group(label: str) -> str:
    """The kind of physical object ``label`` names for duplicate suppression: calls of one
    group at one place are one object (``hemophagocyte`` -> ``macrophage``)."""
    for group in _SHARED_NMS_GROUPS:
        if label in group:
            return group[0]
    return label


def decode_heatmaps(
    heatmap_logits: np.ndarray,
    log_size: np.ndarray,
    offset: np.ndarray,
    stride: int,
    thresholds: np.ndarray,
    max_detections: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Peaks of one window's heatmaps as boxes in that window's pixel frame.

    Inputs are one window's outputs, float32: ``[K, h, w]``, ``[2, h, w]``, ``[2, h, w]``;
    ``thresholds`` is ``float32 [K]``. A peak is a local 3x3 maximum at or above its class
    threshold; at most ``max_detections`` highest-scoring peaks are returned.
    """
    return decode_heatmaps_at(heatmap_logits, log_size, offset, stride, [thresholds],
                              max_detections)[0]  # fmt: skip


def decode_heatmaps_at(
    heatmap_logits: np.ndarray,
    log_size: np.ndarray,
    offset: np.ndarray,
    stride: int,
    threshold_sets: Sequence[np.ndarray],
    max_detections: int,
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """:func:`decode_heatmaps` at each of several ``float32 [K]`` threshold sets, finding the
    heatmaps' peaks once."""
    heat = 1 / (1 + np.exp(-heatmap_logits.astype(np.float32)))
    peaks = heat == _max_3x3(heat)
    out = []
    for thresholds in threshold_sets:
        keep = peaks & (heat >= np.asarray(thresholds, np.float32)[:, None, None])
        labels, ys, xs = np.nonzero(keep)
        scores = heat[labels, ys, xs]
        if len(scores) > max_detections:
            top = np.argsort(-scores, kind="stable")[:max_detections]
            labels, ys, xs, scores = labels[top], ys[top], xs[top], scores[top]
        cx = (xs.astype(np.float32) + offset[0, ys, xs]) * np.float32(stride)
        cy = (ys.astype(np.float32) + offset[1, ys, xs]) * np.float32(stride)
        w = np.exp(np.minimum(log_size[0, ys, xs], np.float32(8))) * np.float32(stride)
        h = np.exp(np.minimum(log_size[1, ys, xs], np.float32(8))) * np.float32(stride)
        boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
        out.append((boxes.astype(np.float32), scores, labels.astype(np.int64)))
    return out


def _max_3x3(heat: np.ndarray) -> np.ndarray:
    """The maximum over each pixel's 3x3 neighbourhood within its channel (edges: of the
    pixels that exist), ``[K, h, w]``."""
    padded = np.pad(heat, ((0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    h, w = heat.shape[1:]
    out = padded[:, 1 : h + 1, 1 : w + 1].copy()
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            np.maximum(out, padded[:, dy : dy + h, dx : dx + w], out=out)
    return out


def suppress_duplicates(
    boxes: np.ndarray,
    scores: np.ndarray,
    labels: np.ndarray,
    classes: tuple[str, ...],
    iou: float,
    ios: Mapping[str, float] | None = None,
) -> np.ndarray:
    """Indices kept by class-wise NMS (shared groups compete together), by descending score:
    a box goes when its IoU with a higher-scoring box of its group exceeds ``iou``, or its
    intersection over the smaller of the two boxes exceeds its class's ``ios`` (nested boxes,
    and one cell's two slightly different boxes from two overlapping windows)."""
    if len(scores) == 0:
        return np.zeros(0, dtype=np.int64)
    group_of = list(range(len(classes)))
    for group in _SHARED_NMS_GROUPS:
        members = [classes.index(c) for c in group if c in classes]
        for m in members:
            group_of[m] = members[0]
    groups = np.asarray(group_of)[labels]
    keep = batched_nms(boxes, scores, groups, iou)
    if ios:
        limit = np.array([ios.get(c, np.inf) for c in classes], np.float64)[labels[keep]]
        keep = keep[_ios_survivors(boxes[keep], groups[keep], limit)]
    return keep


def box_iou(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """IoU of every box of ``boxes1 [N, 4]`` with every box of ``boxes2 [M, 4]``: ``[N, M]``."""
    boxes1, boxes2 = boxes1.astype(np.float32), boxes2.astype(np.float32)
    area1 = (boxes1[:, 2] - boxes1[:, 0]) * (boxes1[:, 3] - boxes1[:, 1])
    area2 = (boxes2[:, 2] - boxes2[:, 0]) * (boxes2[:, 3] - boxes2[:, 1])
    lt = np.maximum(boxes1[:, None, :2], boxes2[None, :, :2])
    rb = np.minimum(boxes1[:, None, 2:], boxes2[None, :, 2:])
    wh = np.maximum(rb - lt, np.float32(0))
    inter = wh[..., 0] * wh[..., 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / (area1[:, None] + area2[None, :] - inter)


def _greedy(n: int, conflicts: Callable[[int, int], np.ndarray]) -> np.ndarray:
    """Greedy survival of ``n`` items in priority order: item ``i`` survives unless a surviving
    item before it conflicts with it; ``conflicts(start, stop)`` is the ``bool [stop - start, n]``
    block of rows ``start:stop`` (row ``i``: the items ``i`` removes). Rows come in blocks so
    memory stays at ``_BLOCK * n`` whatever ``n``."""
    alive = np.ones(n, bool)
    for start in range(0, n, _BLOCK):
        block = conflicts(start, min(n, start + _BLOCK))
        for i in range(start, min(n, start + _BLOCK)):
            if alive[i]:
                alive &= ~block[i - start]
                alive[i] = True
    return alive


def _overlap(boxes: np.ndarray, areas: np.ndarray, rows: slice) -> np.ndarray:
    """``float32 [rows, N]`` intersection areas of the boxes ``rows`` with every box."""
    w = np.minimum(boxes[rows, None, 2], boxes[None, :, 2]) - np.maximum(
        boxes[rows, None, 0], boxes[None, :, 0]
    )
    h = np.minimum(boxes[rows, None, 3], boxes[None, :, 3]) - np.maximum(
        boxes[rows, None, 1], boxes[None, :, 1]
    )
    return np.maximum(np.float32(0), w) * np.maximum(np.float32(0), h)


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Indices kept by greedy NMS, by descending score: a box goes when its IoU with a kept,
    higher-scoring box exceeds ``iou``."""
    order = np.argsort(-scores, kind="stable")
    ranked = boxes[order].astype(np.float32)
    areas = (ranked[:, 2] - ranked[:, 0]) * (ranked[:, 3] - ranked[:, 1])

    def conflicts(start: int, stop: int) -> np.ndarray:
        inter = _overlap(ranked, areas, slice(start, stop))
        with np.errstate(divide="ignore", invalid="ignore"):
            overlap = inter / (areas[start:stop, None] + areas[None, :] - inter)
        return overlap.astype(np.float64) > iou

    return order[_greedy(len(order), conflicts)].astype(np.int64)


def batched_nms(
    boxes: np.ndarray, scores: np.ndarray, groups: np.ndarray, iou: float
) -> np.ndarray:
    """:func:`nms` within each group, by descending score (torchvision's two strategies: boxes
    of a group shifted apart for up to 1,000 boxes, group by group beyond)."""
    if len(scores) == 0:
        return np.zeros(0, dtype=np.int64)
    boxes = boxes.astype(np.float32)
    if boxes.size <= 4000:
        offsets = groups.astype(np.float32) * (boxes.max() + np.float32(1))
        return nms(boxes + offsets[:, None], scores, iou)
    keep = np.zeros(len(scores), bool)
    for group in np.unique(groups):
        members = np.flatnonzero(groups == group)
        keep[members[nms(boxes[members], scores[members], iou)]] = True
    kept = np.flatnonzero(keep)
    return kept[np.argsort(-scores[kept], kind="stable")]


def _ios_survivors(boxes: np.ndarray, groups: np.ndarray, limit: np.ndarray) -> np.ndarray:
    """Indices (into ``boxes``, sorted by descending score) of the boxes whose intersection
    over the smaller box with every higher-scoring surviving box of their group is at most
    their own ``limit``."""
    areas = np.maximum(boxes[:, 2] - boxes[:, 0], 0) * np.maximum(boxes[:, 3] - boxes[:, 1], 0)
    later = np.arange(len(boxes))

    def conflicts(start: int, stop: int) -> np.ndarray:
        rows = slice(start, stop)
        smaller = np.maximum(np.minimum(areas[rows, None], areas[None, :]), 1e-9)
        nested = _overlap(boxes, areas, rows) / smaller > limit[None, :]
        same = groups[rows, None] == groups[None, :]
        return nested & same & (later[None, :] > later[rows, None])

    return np.flatnonzero(_greedy(len(boxes), conflicts))


def to_detections(
    boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray, classes: tuple[str, ...]
) -> list[Detection]:
    """Build detections; each engulfed cell is attached to the hemophagocyte that holds it.

    An engulfed cell belongs to the highest-scoring hemophagocyte whose box contains its
    centre; an engulfed cell that no hemophagocyte contains is dropped (it is not a free cell).
    """
    cells: list[Detection] = []
    engulfed: list[EngulfedCell] = []
    for box, score, label in zip(boxes.tolist(), scores.tolist(), labels.tolist()):
        name = classes[label]
        if name.startswith(ENGULFED_PREFIX):
            engulfed.append(EngulfedCell(name.removeprefix(ENGULFED_PREFIX), score, *box))
        else:
            cells.append(Detection(name, score, *box))
    hosts = sorted(
        (i for i, d in enumerate(cells) if d.label == "hemophagocyte"),
        key=lambda i: -cells[i].score,
    )
    held: dict[int, list[EngulfedCell]] = {i: [] for i in hosts}
    for cell in engulfed:
        cx, cy = (cell.x1 + cell.x2) / 2, (cell.y1 + cell.y2) / 2
        for i in hosts:
            host = cells[i]
            if host.x1 <= cx <= host.x2 and host.y1 <= cy <= host.y2:
                held[i].append(cell)
                break
    for i, contents in held.items():
        contents.sort(key=lambda c: -c.score)
        d = cells[i]
        cells[i] = Detection(d.label, d.score, d.x1, d.y1, d.x2, d.y2, tuple(contents))
    return cells
