"""Tiny whole-slide images for tests: smears of dark discs on glass, written as pyramidal TIFF
(generic, with SubIFDs) or as Aperio SVS, with tifffile."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import tifffile

GLASS = 235
DISC_RGB = (110, 40, 60)


def smear(width: int, height: int, discs: list[tuple[int, int]], radius: int) -> np.ndarray:
    """``(height, width, 3)`` uint8 RGB glass with dark discs of ``radius`` at ``discs`` (x, y)."""
    image = np.full((height, width, 3), GLASS, np.uint8)
    for x, y in discs:
        cv2.circle(image, (x, y), radius, DISC_RGB, -1)
    return image


def pyramid(level0: np.ndarray, levels: int) -> list[np.ndarray]:
    """``level0`` and ``levels - 1`` halvings (area averaging)."""
    out = [level0]
    for _ in range(levels - 1):
        h, w = out[-1].shape[:2]
        out.append(cv2.resize(out[-1], (w // 2, h // 2), interpolation=cv2.INTER_AREA))
    return out


def write_pyramidal_tiff(path: Path, level0: np.ndarray, mpp: float | None, levels: int = 3,
                         tile: int = 256, compression: str = "zlib") -> Path:  # fmt: skip
    """A generic tiled pyramidal TIFF (levels as SubIFDs); resolution tags in cm if ``mpp``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    images = pyramid(level0, levels)
    with tifffile.TiffWriter(path) as tw:
        for i, image in enumerate(images):
            kw: dict = (
                {"resolution": (1e4 / (mpp * 2**i),) * 2, "resolutionunit": "CENTIMETER"}
                if mpp
                else {}
            )
            if i == 0:
                kw["subifds"] = levels - 1
            else:
                kw["subfiletype"] = 1
            tw.write(image, tile=(tile, tile), photometric="rgb", compression=compression, **kw)
    return path


def write_svs(path: Path, level0: np.ndarray, mpp: float, levels: int = 3, tile: int = 256,
              compression: str = "jpeg") -> Path:  # fmt: skip
    """An Aperio-like SVS: tiled baseline with ``MPP`` in its ImageDescription, a stripped
    thumbnail, then the reduced levels."""
    path.parent.mkdir(parents=True, exist_ok=True)
    images = pyramid(level0, levels)
    h, w = level0.shape[:2]
    head = "Aperio Image Library v12.0.15 \r\n"
    with tifffile.TiffWriter(path) as tw:
        tw.write(images[0], tile=(tile, tile), photometric="rgb", compression=compression,
                 description=f"{head}{w}x{h} [0,0 {w}x{h}] ({tile}x{tile}) JPEG/RGB Q=90"
                 f"|AppMag = 40|MPP = {mpp}", metadata=None)  # fmt: skip
        thumb = cv2.resize(level0, (max(1, w // 16), max(1, h // 16)), interpolation=cv2.INTER_AREA)
        tw.write(thumb, photometric="rgb", description=f"{head}{w}x{h} -> thumbnail", metadata=None)
        for image in images[1:]:
            tw.write(image, tile=(tile, tile), photometric="rgb", compression=compression,
                     description=f"{head}{w}x{h} -> {image.shape[1]}x{image.shape[0]}",
                     metadata=None)  # fmt: skip
    return path
