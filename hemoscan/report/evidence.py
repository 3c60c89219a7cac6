"""Cell crops behind the counts, embedded in the report as data URIs."""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from hemoscan.datamodel import Detection, describe_engulfed
from hemoscan.errors import HemoscanError
from hemoscan.io.images import read_tile
from hemoscan.io.regions import parse_region_name
from hemoscan.visualize import crop_detection

CROP_SIDE_PX = 180
#: Box colours on crops (RGB); the report's legend names them.
HOST_COLOUR = (40, 200, 60)
ENGULFED_COLOUR = (255, 255, 255)


@dataclass(frozen=True)
class EvidenceCrop:
    """One detection shown to the reader: where it is, how sure the model is, and its crop.

    ``link`` is the picture of its whole tile (the scan's overlay, else the tile), if any;
    ``note`` a remark for the caption (e.g. what a near miss was counted as instead).
    """

    tile: str
    label: str
    score: float
    box: tuple[float, float, float, float]
    engulfed: dict[str, int] | None
    image_uri: str  # "" when the tile could not be read
    link: Path | None = None
    note: str = ""

    @property
    def holds(self) -> str:
        """What a hemophagocyte holds, for a caption (``""`` for other cells)."""
        return describe_engulfed(self.engulfed) if self.engulfed else ""


def _jpeg_uri(image: np.ndarray) -> str:
    ok, data = cv2.imencode(
        ".jpg", cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 88]
    )
    return "data:image/jpeg;base64," + base64.b64encode(data.tobytes()).decode() if ok else ""


def render_crop(image: np.ndarray, det: Detection) -> np.ndarray:
    """The detection's crop with its box (green; :data:`HOST_COLOUR`) and engulfed cells (white;
    :data:`ENGULFED_COLOUR`), about 180 px."""
    crop = crop_detection(image, det).copy()
    mx, my = (det.x2 - det.x1) * 0.25, (det.y2 - det.y1) * 0.25
    ox, oy = max(0, int(det.x1 - mx)), max(0, int(det.y1 - my))
    cv2.rectangle(crop, (round(det.x1 - ox), round(det.y1 - oy)), (round(det.x2 - ox), round(det.y2 - oy)),
                  HOST_COLOUR, 2)  # fmt: skip
    for c in det.engulfed_cells:
        cv2.rectangle(crop, (round(c.x1 - ox), round(c.y1 - oy)), (round(c.x2 - ox), round(c.y2 - oy)),
                      ENGULFED_COLOUR, 1)  # fmt: skip
    side = max(crop.shape[:2])
    if side and side != CROP_SIDE_PX:
        f = CROP_SIDE_PX / side
        crop = cv2.resize(
            crop, (max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f)))
        )
    return crop


def _find(path: str, base_dirs: list[Path]) -> list[Path]:
    return [Path(path)] if Path(path).is_absolute() else [b / path for b in base_dirs]


def _shifted(det: Detection, dx: float, dy: float) -> Detection:
    cells = tuple(
        replace(c, x1=c.x1 - dx, y1=c.y1 - dy, x2=c.x2 - dx, y2=c.y2 - dy)
        for c in det.engulfed_cells
    )
    return replace(det, x1=det.x1 - dx, y1=det.y1 - dy, x2=det.x2 - dx, y2=det.y2 - dy,
                   engulfed_cells=cells)  # fmt: skip


def _slide_crop(slide_path: str, det: Detection, base_dirs: list[Path]) -> np.ndarray | None:
    """The crop of a detection in level-0 slide pixels, read from the slide around it only."""
    from hemoscan.io.slides import open_cached

    for path in _find(slide_path, base_dirs):
        try:
            slide = open_cached(str(path))
            width, height = slide.size
            mx, my = (det.x2 - det.x1) * 0.3 + 2, (det.y2 - det.y1) * 0.3 + 2
            x0, y0 = max(0, math.floor(det.x1 - mx)), max(0, math.floor(det.y1 - my))
            x1, y1 = min(width, math.ceil(det.x2 + mx)), min(height, math.ceil(det.y2 + my))
            window = slide.read_region(x0, y0, x1 - x0, y1 - y0)
        except (HemoscanError, ValueError):
            continue
        return render_crop(window, _shifted(det, x0, y0))
    return None


def collect_crops(
    picks: list[tuple[str, Detection]], base_dirs: list[Path]
) -> tuple[list[EvidenceCrop], list[str]]:
    """Crops for ``(tile, detection)`` picks, reading each tile once; returns crops and warnings.

    A relative tile path is looked up under each of ``base_dirs`` in turn (the scan's working
    folder first). A slide region's detection (level-0 slide pixels) is cropped from the slide
    itself, reading only the window around it. A tile or slide that cannot be read still
    yields its row, without a picture.
    """
    cache: dict[str, np.ndarray | None] = {}
    warnings: list[str] = []
    crops = []
    for tile, det in picks:
        region = parse_region_name(tile)
        if region is not None:
            crop = _slide_crop(region[0], det, base_dirs)
            if crop is None:
                warnings.append(f"{region[0]}: slide not readable now, a crop is missing")
            uri = _jpeg_uri(crop) if crop is not None else ""
            crops.append(EvidenceCrop(tile, det.label, det.score,
                                      (det.x1, det.y1, det.x2, det.y2), det.engulfed, uri))  # fmt: skip
            continue
        if tile not in cache:
            cache[tile] = None
            for path in _find(tile, base_dirs):
                try:
                    cache[tile] = read_tile(path)
                    break
                except HemoscanError:
                    continue
            if cache[tile] is None:
                warnings.append(
                    f"{tile}: tile not readable now, its crops are missing from this report"
                )
        image = cache[tile]
        uri = _jpeg_uri(render_crop(image, det)) if image is not None else ""
        crops.append(
            EvidenceCrop(
                tile, det.label, det.score, (det.x1, det.y1, det.x2, det.y2), det.engulfed, uri
            )
        )
    return crops, warnings
