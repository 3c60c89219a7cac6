"""Regions of a whole-slide image: the units a slide is scanned in, like tiles.

A :class:`SlideRegion` is a box of one pyramid level, resampled to the model's pixel size
when read, plus its *core*: the part of the slide it answers for. Cores of a slide's regions
partition it; a detection is kept only by the region whose core holds its centre, so a cell
on a seam between regions is counted once. Detections are reported in **level-0 slide
pixels** (origin top-left, x right, y down), the frame QuPath and OpenSlide use.

Each region has a stable name (:func:`region_name`), which is its ``tile`` in ``tiles.csv``
and ``detections.jsonl``::

    <slide path as given> [x=X,y=Y,w=W,h=H]

``X, Y, W, H`` being its core in level-0 pixels. :func:`parse_region_name` reads it back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

import cv2
import numpy as np

from hemoscan.datamodel import Detection
from hemoscan.io.readers import ImageReader

_NAME = re.compile(r"^(?P<slide>.+) \[x=(?P<x>\d+),y=(?P<y>\d+),w=(?P<w>\d+),h=(?P<h>\d+)\]$")


def region_name(slide: str, x: int, y: int, w: int, h: int) -> str:
    """``"<slide> [x=X,y=Y,w=W,h=H]"``: the name of the region whose core is that level-0 box."""
    return f"{slide} [x={x},y={y},w={w},h={h}]"


def parse_region_name(name: str) -> tuple[str, int, int, int, int] | None:
    """``(slide, x, y, w, h)`` of a :func:`region_name`, or ``None`` for any other tile name."""
    m = _NAME.match(name)
    if m is None:
        return None
    return m["slide"], int(m["x"]), int(m["y"]), int(m["w"]), int(m["h"])


@dataclass(frozen=True)
class SlideRegion:
    """One region of a slide to scan (plain values only: it pickles, e.g. to Dask workers).

    Reading: the box ``[x, x + w) x [y, y + h)`` in pixels of pyramid ``level`` of ``slide``
    (its path as given), resized to ``out_w x out_h`` pixels.

    Placing: image pixel coordinates ``(u, v)`` (continuous, pixel edges at integers) are at
    level-0 ``(origin_x + u * scale_x, origin_y + v * scale_y)``. The core is the level-0 box
    ``[core_x0, core_x1) x [core_y0, core_y1)``.
    """

    slide: str
    level: int
    x: int
    y: int
    w: int
    h: int
    out_w: int
    out_h: int
    core_x0: int
    core_y0: int
    core_x1: int
    core_y1: int
    origin_x: float
    origin_y: float
    scale_x: float
    scale_y: float

    @property
    def name(self) -> str:
        return region_name(self.slide, self.core_x0, self.core_y0,
                           self.core_x1 - self.core_x0, self.core_y1 - self.core_y0)  # fmt: skip

    @property
    def core_size(self) -> tuple[int, int]:
        """``(width, height)`` of the core, level-0 pixels."""
        return self.core_x1 - self.core_x0, self.core_y1 - self.core_y0

    def read(self, reader: ImageReader) -> np.ndarray:
        """The region as the model sees it: ``(out_h, out_w, 3)`` uint8 RGB (the level's box,
        resized with area averaging when shrinking and bilinearly when enlarging)."""
        pixels = reader.read_region(self.x, self.y, self.w, self.h, self.level)
        if (self.w, self.h) == (self.out_w, self.out_h):
            return pixels
        shrink = self.out_w * self.out_h < self.w * self.h
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        return cv2.resize(pixels, (self.out_w, self.out_h), interpolation=interpolation)

    def in_core(self, x: float, y: float) -> bool:
        """Whether the level-0 point ``(x, y)`` lies in the core."""
        return self.core_x0 <= x < self.core_x1 and self.core_y0 <= y < self.core_y1

    def to_slide(
        self, detections: list[Detection] | tuple[Detection, ...]
    ) -> tuple[Detection, ...]:
        """Detections in image pixels -> those whose centre lies in the core, in level-0 pixels
        (their engulfed cells too)."""
        placed = (self._map(d, self.origin_x, self.origin_y, self.scale_x, self.scale_y)
                  for d in detections)  # fmt: skip
        return tuple(d for d in placed if self.in_core(*d.center))

    def to_image(self, detections: tuple[Detection, ...]) -> tuple[Detection, ...]:
        """Detections in level-0 pixels -> image pixels of this region (inverse of
        :meth:`to_slide`, for drawing evidence on the region's image)."""
        sx, sy = 1 / self.scale_x, 1 / self.scale_y
        ox, oy = -self.origin_x * sx, -self.origin_y * sy
        return tuple(self._map(d, ox, oy, sx, sy) for d in detections)

    @staticmethod
    def _map(det: Detection, ox: float, oy: float, sx: float, sy: float) -> Detection:
        cells = tuple(
            replace(c, x1=ox + c.x1 * sx, y1=oy + c.y1 * sy, x2=ox + c.x2 * sx, y2=oy + c.y2 * sy)
            for c in det.engulfed_cells
        )
        return replace(
            det,
            x1=ox + det.x1 * sx,
            y1=oy + det.y1 * sy,
            x2=ox + det.x2 * sx,
            y2=oy + det.y2 * sy,
            engulfed_cells=cells,
        )
