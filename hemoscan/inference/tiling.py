"""An overlapping grid of windows whose cores partition the image.

A detection found in a window is kept only when its centre lies in that window's core, so a
cell on a seam is counted once. Window origins are multiples of ``tile_size - overlap``
(itself a multiple of 32), which keeps every window aligned with the network's stride grid.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Window:
    """A ``size x size`` window at ``(x0, y0)``; its core is ``[cx0, cx1) x [cy0, cy1)``.

    Coordinates are pixels of the (scaled) image. A window may extend past the image's right
    or bottom edge; the predictor pads it.
    """

    x0: int
    y0: int
    size: int
    cx0: int
    cy0: int
    cx1: int
    cy1: int

    def core_contains(self, x: float, y: float) -> bool:
        return self.cx0 <= x < self.cx1 and self.cy0 <= y < self.cy1


def _axis(length: int, size: int, overlap: int) -> list[tuple[int, int, int]]:
    """(origin, core_start, core_end) along one axis."""
    if length <= size:
        return [(0, 0, length)]
    step = size - overlap
    origins = list(range(0, length - overlap, step))
    if origins[-1] + size < length:
        origins.append(origins[-1] + step)
    spans = []
    for i, x0 in enumerate(origins):
        start = 0 if i == 0 else x0 + overlap // 2
        end = length if i == len(origins) - 1 else x0 + size - overlap // 2
        spans.append((x0, start, end))
    return spans


def grid(width: int, height: int, size: int, overlap: int) -> list[Window]:
    """Windows covering a ``width x height`` image, row by row."""
    return [
        Window(x0, y0, size, cx0, cy0, cx1, cy1)
        for y0, cy0, cy1 in _axis(height, size, overlap)
        for x0, cx0, cx1 in _axis(width, size, overlap)
    ]
