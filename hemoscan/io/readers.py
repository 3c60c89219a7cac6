"""One reader interface for every image hemoscan scans: plain tiles and whole-slide images.

An :class:`ImageReader` exposes an image as one or more resolution levels (level 0 is full
resolution) and reads rectangular regions of a level on demand, as ``(h, w, 3)`` uint8 RGB
arrays (the conventions of :mod:`hemoscan.io.images`). A plain tile (:class:`TileImage`) is a
single-level image decoded whole; a whole-slide image (:class:`hemoscan.io.slides.Slide`) is a
pyramid read lazily, so a slide is never held in memory. This is the base module of
:mod:`hemoscan.io`'s readers: :func:`hemoscan.io.slides.open_image` picks the reader for a
file, :func:`hemoscan.io.sources.read_source` reads one unit of a scan.

Coordinates: pixels of the level read, origin top-left, x to the right, y down; a level's
pixel ``(i, j)`` covers level-0 pixels ``[i * downsample_x, (i + 1) * downsample_x)`` (same for
y), so level-0 coordinates are ``level coordinate * downsample``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Protocol, Self, runtime_checkable

import numpy as np

from hemoscan.io.images import read_tile


@dataclass(frozen=True)
class Level:
    """One resolution level: its size in pixels and its downsample factors from level 0
    (``level-0 width / width`` and ``level-0 height / height``; 1.0 for level 0)."""

    width: int
    height: int
    downsample_x: float = 1.0
    downsample_y: float = 1.0

    @property
    def downsample(self) -> float:
        """Mean of the two axes' downsample factors."""
        return (self.downsample_x + self.downsample_y) / 2


@runtime_checkable
class ImageReader(Protocol):
    """An image read region by region.

    ``levels[0]`` is full resolution; ``mpp`` is level 0's pixel size in µm per pixel, or
    ``None`` when the file does not say. ``read_region`` returns a C-contiguous ``(h, w, 3)``
    uint8 RGB array for the box ``[x, x + w) x [y, y + h)`` in pixels of ``level``; the box
    must lie inside the level (``ValueError`` otherwise).
    """

    @property
    def path(self) -> str: ...

    @property
    def levels(self) -> tuple[Level, ...]: ...

    @property
    def mpp(self) -> float | None: ...

    def read_region(self, x: int, y: int, w: int, h: int, level: int = 0) -> np.ndarray: ...

    def close(self) -> None: ...


def check_box(path: str, levels: tuple[Level, ...], x: int, y: int, w: int, h: int,
              level: int) -> None:  # fmt: skip
    """Raise ``ValueError`` unless ``level`` exists and the box is non-empty and inside it."""
    if not 0 <= level < len(levels):
        raise ValueError(f"{path}: no level {level} (the image has {len(levels)})")
    lv = levels[level]
    if w <= 0 or h <= 0 or x < 0 or y < 0 or x + w > lv.width or y + h > lv.height:
        raise ValueError(
            f"{path}: region x={x}, y={y}, w={w}, h={h} is empty or outside level {level} "
            f"({lv.width}x{lv.height})"
        )


class TileImage:
    """A plain image tile (PNG, JPEG, TIFF), decoded whole by
    :func:`~hemoscan.io.images.read_tile` when opened: one level, no pixel size."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.fspath(path)
        self._pixels = read_tile(self._path)
        h, w = self._pixels.shape[:2]
        self._levels = (Level(w, h),)

    @property
    def path(self) -> str:
        return self._path

    @property
    def levels(self) -> tuple[Level, ...]:
        return self._levels

    @property
    def mpp(self) -> float | None:
        return None

    def read_region(self, x: int, y: int, w: int, h: int, level: int = 0) -> np.ndarray:
        check_box(self._path, self._levels, x, y, w, h, level)
        if (x, y, w, h) == (0, 0, self._levels[0].width, self._levels[0].height):
            return self._pixels
        return np.ascontiguousarray(self._pixels[y : y + h, x : x + w])

    def close(self) -> None:
        pass

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
