"""Cell crops behind the counts, embedded in the report as data URIs."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from hemoscan.datamodel import Detection, describe_engulfed
from hemoscan.io.regions import parse_region_name
from hemoscan.visualize import read_tile_image, render_crop, slide_crop


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
            crop = slide_crop(region[0], det, base_dirs)
            if crop is None:
                warnings.append(f"{region[0]}: slide not readable now, a crop is missing")
            uri = _jpeg_uri(crop) if crop is not None else ""
            crops.append(EvidenceCrop(tile, det.label, det.score,
                                      (det.x1, det.y1, det.x2, det.y2), det.engulfed, uri))  # fmt: skip
            continue
        if tile not in cache:
            cache[tile] = read_tile_image(tile, base_dirs)
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
