"""Image utilities of the composed recipe: reading, rescaling and cropping a field with its boxes.

Images are HWC uint8 RGB; boxes float32 ``[N, 5]`` (``x1, y1, x2, y2`` pixels, class index).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from .splits import Boxes

#: ImageNet's mean and std in 0-255 units: what the composed crops are normalised with.
MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255


def load_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def rescale(img: np.ndarray, boxes: Boxes, s: float) -> tuple[np.ndarray, Boxes]:
    h, w = img.shape[:2]
    size = (max(1, round(w * s)), max(1, round(h * s)))
    img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    boxes = boxes.copy()
    boxes[:, :4] *= s
    return img, boxes


def border_colour(img: np.ndarray) -> tuple[int, int, int]:
    edge = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    return tuple(int(v) for v in np.median(edge, axis=0))  # type: ignore[return-value]


def random_crop(
    img: np.ndarray, boxes: Boxes, size: int, rng: np.random.Generator, min_visible: float = 0.4
) -> tuple[np.ndarray, Boxes]:
    """A ``size`` square crop (padded with the border colour); boxes clipped, mostly-cut dropped."""
    h, w = img.shape[:2]
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        top, left = int(rng.integers(0, ph + 1)), int(rng.integers(0, pw + 1))
        img = cv2.copyMakeBorder(
            img, top, ph - top, left, pw - left, cv2.BORDER_CONSTANT, value=border_colour(img)
        )
        boxes = boxes + np.array([left, top, left, top, 0], np.float32)
        h, w = img.shape[:2]
    y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    img = img[y0 : y0 + size, x0 : x0 + size]
    b = boxes - np.array([x0, y0, x0, y0, 0], np.float32)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    b[:, :4] = np.clip(b[:, :4], 0, size)
    visible = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return np.ascontiguousarray(img), b[visible >= min_visible * np.maximum(area, 1e-6)]
