"""CenterNet training targets of a crop: class heatmaps, box sizes and centre offsets."""

from __future__ import annotations

import math

import numpy as np

from .splits import CLASSES, Boxes

#: Output stride of the detectors' heads (pixels of the crop per heatmap cell).
STRIDE = 8


def gaussian_radius(h: float, w: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius such that a box shifted by it keeps ``min_overlap`` IoU."""
    b1, c1 = h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * c1)) / 2
    b2, c2 = 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + math.sqrt(b2**2 - 16 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def make_targets(
    boxes: Boxes, size: int, num_classes: int = len(CLASSES), stride: int = STRIDE
) -> dict[str, np.ndarray]:
    """CenterNet targets at ``stride`` (default 8) for a ``size`` square crop: heatmap [K,h,w],
    size/offset [2,h,w], reg_mask [1,h,w], float32, ``h = w = size // stride``."""
    g = size // stride
    heat = np.zeros((num_classes, g, g), np.float32)
    wh = np.zeros((2, g, g), np.float32)
    off = np.zeros((2, g, g), np.float32)
    mask = np.zeros((1, g, g), np.float32)
    yy, xx = np.mgrid[0:g, 0:g].astype(np.float32)
    # largest first so small objects win a shared centre cell for size/offset
    for x1, y1, x2, y2, c in sorted(boxes.tolist(), key=lambda b: -(b[2] - b[0]) * (b[3] - b[1])):
        w, h = (x2 - x1) / stride, (y2 - y1) / stride
        if w < 0.25 or h < 0.25:
            continue
        cx, cy = (x1 + x2) / 2 / stride, (y1 + y2) / 2 / stride
        ix, iy = min(int(cx), g - 1), min(int(cy), g - 1)
        sigma = max((2 * max(0.0, gaussian_radius(h, w)) + 1) / 6, 0.7)
        np.maximum(
            heat[int(c)],
            np.exp(-((xx - ix) ** 2 + (yy - iy) ** 2) / (2 * sigma**2)),
            out=heat[int(c)],
        )
        wh[:, iy, ix] = math.log(w), math.log(h)
        off[:, iy, ix] = cx - ix, cy - iy
        mask[0, iy, ix] = 1.0
    heat[heat < 1e-4] = 0.0
    return {"heatmap": heat, "log_size": wh, "offset": off, "reg_mask": mask}
