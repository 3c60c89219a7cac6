"""Pictures for the review page, cut lazily: a crop per suggestion and a view of its whole tile.

Crops are cut when first asked for (from the tile, or from the slide around the cell) with the
report's crop code (:func:`hemoscan.visualize.render_crop`), encoded as JPEG and kept in a
bounded cache, as are the last few decoded tiles, so a page of thousands of suggestions costs
only what the reviewer looks at. Thread-safe (the server answers from a thread pool).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

import cv2
import numpy as np

from hemoscan.datamodel import Detection
from hemoscan.io.regions import parse_region_name
from hemoscan.visualize import read_slide_window, read_tile_image, render_crop, slide_crop

#: The crop's longer side, pixels (the page shows it at up to this size).
CROP_SIDE = 320
#: The whole-tile view's longer side at most, pixels.
TILE_VIEW_SIDE = 1600

K = TypeVar("K")
V = TypeVar("V")


class _Lru(Generic[K, V]):
    def __init__(self, size: int) -> None:
        self.size, self._items, self._lock = size, OrderedDict[K, V](), threading.Lock()

    def get(self, key: K, make: Callable[[], V]) -> V:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()  # outside the lock: two threads may cut the same picture once each
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


def _jpeg(image: np.ndarray, quality: int = 88) -> bytes:
    ok, data = cv2.imencode(".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR),
                            [cv2.IMWRITE_JPEG_QUALITY, quality])  # fmt: skip
    return data.tobytes() if ok else b""


@dataclass(frozen=True)
class TileView:
    """A whole tile (or a slide region) as a JPEG: a pixel ``(u, v)`` of the picture is at
    ``(origin_x + u / factor, origin_y + v / factor)`` in the frame of the tile's detections."""

    jpeg: bytes
    origin_x: float
    origin_y: float
    factor: float
    width: int
    height: int


class ReviewImages:
    """Crops and tile views of one scan folder whose relative tile paths are looked for under
    ``base_dirs``. Methods return ``None`` when the picture cannot be read now."""

    def __init__(self, base_dirs: list[Path], crops: int = 4096, tiles: int = 6) -> None:
        self.base_dirs = base_dirs
        self._crops: _Lru[tuple[str, Detection], bytes | None] = _Lru(crops)
        self._tiles: _Lru[str, np.ndarray | None] = _Lru(tiles)
        self._views: _Lru[str, TileView | None] = _Lru(tiles)

    def _tile(self, tile: str) -> np.ndarray | None:
        return self._tiles.get(tile, lambda: read_tile_image(tile, self.base_dirs))

    def crop(self, tile: str, det: Detection) -> bytes | None:
        """The JPEG crop of ``det`` (in the frame of ``tile``'s detections)."""

        def cut() -> bytes | None:
            region = parse_region_name(tile)
            if region is not None:
                image = slide_crop(region[0], det, self.base_dirs, CROP_SIDE)
                return None if image is None else _jpeg(image)
            tile_image = self._tile(tile)
            return None if tile_image is None else _jpeg(render_crop(tile_image, det, CROP_SIDE))

        return self._crops.get((tile, det), cut)

    def tile_view(self, tile: str) -> TileView | None:
        """The whole tile, or a slide region's core with a margin, at most
        :data:`TILE_VIEW_SIDE` pixels across."""

        def make() -> TileView | None:
            region = parse_region_name(tile)
            if region is None:
                image, x0, y0 = self._tile(tile), 0, 0
            else:
                slide, x, y, w, h = region
                m = 0.15 * max(w, h)
                window = read_slide_window(slide, (x - m, y - m, x + w + m, y + h + m), self.base_dirs)
                image, x0, y0 = window if window is not None else (None, 0, 0)
            if image is None:
                return None
            factor = min(1.0, TILE_VIEW_SIDE / max(image.shape[:2]))
            if factor < 1:
                image = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
            return TileView(_jpeg(image, 85), x0, y0, factor, image.shape[1], image.shape[0])

        return self._views.get(tile, make)

