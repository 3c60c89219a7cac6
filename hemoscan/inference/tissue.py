"""A cheap smear (tissue) mask of a whole-slide image, so blank glass never goes through the model.

The mask is computed at low resolution: on the coarsest pyramid level no coarser than
:data:`MASK_MPP` µm per pixel (about two pixels per nucleated cell), read in chunks so memory
stays flat whatever the slide's size. That level is cut into square blocks of about
:data:`BLOCK_UM` µm; a block holds tissue when any of its pixels is stained or dark:

* stained: saturation ``(max - min) / max`` of its RGB at least :data:`SATURATION_MIN`;
* dark: optical density relative to the glass, ``log10(glass / mean(R, G, B))``, at least
  :data:`DENSITY_MIN`, where ``glass`` is the 99th percentile of brightness over the slide
  (the glass is the brightest thing on a brightfield slide);
* pixels black in every channel (``<=`` :data:`BLACK_MAX`; scanner padding outside the
  scanned area) are neither.

Thresholds are deliberately low: a block with one stained pixel is scanned, so only clean
glass is skipped. No smoothing is applied, so a lone cell of two mask pixels is not lost.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hemoscan.io.readers import ImageReader

#: The mask is computed on the coarsest level at most this many µm per pixel (level 0 if none).
MASK_MPP: float = 4.0
#: Side of a mask block, µm (rounded to whole pixels of the mask level).
BLOCK_UM: float = 32.0
SATURATION_MIN: float = 0.12
DENSITY_MIN: float = 0.10
BLACK_MAX: int = 8
_CHUNK_PX = 2048  # pixels of the mask level read at once (a multiple of the block is used)


@dataclass(frozen=True)
class TissueMask:
    """Which blocks of a slide hold tissue.

    ``blocks[r, c]`` (bool, shape ``(rows, cols)``) covers level-0 pixels
    ``[c * block_w, (c + 1) * block_w) x [r * block_h, (r + 1) * block_h)``. ``level`` is the
    pyramid level it was computed on and ``glass`` the brightness taken for the glass (0-255).
    """

    blocks: np.ndarray
    block_w: float
    block_h: float
    level: int
    glass: float

    @property
    def fraction(self) -> float:
        """Fraction of blocks holding tissue."""
        return float(self.blocks.mean()) if self.blocks.size else 0.0

    def any_in(self, x0: float, y0: float, x1: float, y1: float) -> bool:
        """Whether any block meeting the level-0 box ``[x0, x1) x [y0, y1)`` holds tissue."""
        rows, cols = self.blocks.shape
        c0, c1 = max(0, math.floor(x0 / self.block_w)), min(cols, math.ceil(x1 / self.block_w))
        r0, r1 = max(0, math.floor(y0 / self.block_h)), min(rows, math.ceil(y1 / self.block_h))
        return bool(c0 < c1 and r0 < r1 and self.blocks[r0:r1, c0:c1].any())


def mask_level(reader: ImageReader, mpp: float) -> int:
    """The coarsest level of ``reader`` with at most :data:`MASK_MPP` µm per pixel (0 if none);
    ``mpp`` is level 0's pixel size."""
    best = 0
    for i, lv in enumerate(reader.levels):
        if mpp * lv.downsample <= MASK_MPP and lv.downsample > reader.levels[best].downsample:
            best = i
    return best


def tissue_mask(reader: ImageReader, mpp: float) -> TissueMask:
    """Compute the :class:`TissueMask` of ``reader`` (level 0 at ``mpp`` µm per pixel), reading
    the mask level in chunks of at most about ``2048 x 2048`` pixels."""
    level = mask_level(reader, mpp)
    lv = reader.levels[level]
    block = max(1, round(BLOCK_UM / (mpp * lv.downsample)))
    cols, rows = math.ceil(lv.width / block), math.ceil(lv.height / block)
    max_sat = np.zeros((rows, cols), np.float32)
    min_bright = np.full((rows, cols), np.inf, np.float32)
    histogram = np.zeros(256, np.int64)
    step = max(1, _CHUNK_PX // block) * block
    for y in range(0, lv.height, step):
        for x in range(0, lv.width, step):
            w, h = min(step, lv.width - x), min(step, lv.height - y)
            rgb = reader.read_region(x, y, w, h, level)
            sat, bright, valid = _pixel_features(rgb)
            histogram += np.bincount(bright[valid].astype(np.uint8).ravel(), minlength=256)
            r0, c0 = y // block, x // block
            s = _block_reduce(np.where(valid, sat, 0.0), block, np.max, 0.0)
            b = _block_reduce(np.where(valid, bright, np.inf), block, np.min, np.inf)
            max_sat[r0 : r0 + s.shape[0], c0 : c0 + s.shape[1]] = s
            min_bright[r0 : r0 + b.shape[0], c0 : c0 + b.shape[1]] = b
    glass = _percentile_of_histogram(histogram, 99.0)
    density = np.log10(glass / np.maximum(min_bright, 1.0))
    blocks = (max_sat >= SATURATION_MIN) | (density >= DENSITY_MIN)
    return TissueMask(blocks, block * lv.downsample_x, block * lv.downsample_y, level, glass)


def _pixel_features(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Saturation in [0, 1], brightness (mean of R, G, B) in [0, 255], and not-black, per pixel."""
    mx = rgb.max(axis=2).astype(np.float32)
    mn = rgb.min(axis=2).astype(np.float32)
    sat = (mx - mn) / np.maximum(mx, 1.0)
    bright = rgb.astype(np.float32).mean(axis=2)
    return sat, bright, mx > BLACK_MAX


def _block_reduce(
    values: np.ndarray, block: int, op: Callable[..., np.ndarray], fill: float
) -> np.ndarray:
    """Reduce ``(h, w)`` ``values`` over ``block x block`` blocks (edges padded with ``fill``)."""
    h, w = values.shape
    rows, cols = math.ceil(h / block), math.ceil(w / block)
    padded = np.full((rows * block, cols * block), fill, np.float32)
    padded[:h, :w] = values
    return op(padded.reshape(rows, block, cols, block), axis=(1, 3))


def _percentile_of_histogram(histogram: np.ndarray, q: float) -> float:
    total = int(histogram.sum())
    if total == 0:
        return 255.0
    index = int(np.searchsorted(np.cumsum(histogram), total * q / 100.0))
    return float(max(index, 1))
