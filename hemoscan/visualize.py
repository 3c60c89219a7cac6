"""Evidence images: detections drawn over a tile, and crops of the cells behind a count."""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from hemoscan.datamodel import REVIEWED_CLASSES, Detection
from hemoscan.errors import HemoscanError
from hemoscan.io.files import unique_stem
from hemoscan.io.images import read_tile
from hemoscan.io.result_exports import CLASS_COLORS
from hemoscan.io.slides import open_cached

#: Classes whose every detection gets a crop with ``--save-crops`` (rare, reviewed by a person).
CROP_CLASSES = REVIEWED_CLASSES
CROP_SIDE_PX = 180
#: Box colours on evidence crops (RGB); reports and the review page name them.
HOST_COLOUR = (40, 200, 60)
ENGULFED_COLOUR = (255, 255, 255)


def draw_overlay(
    image: np.ndarray, detections: list[Detection] | tuple[Detection, ...]
) -> np.ndarray:
    """HWC uint8 RGB copy of ``image`` with each detection's box in its class colour."""
    out = image.copy()
    thickness = max(1, round(max(image.shape[:2]) / 500))
    for det in detections:
        color = CLASS_COLORS.get(det.label, (128, 128, 128))
        p1, p2 = (round(det.x1), round(det.y1)), (round(det.x2), round(det.y2))
        cv2.rectangle(out, p1, p2, color, thickness)
        for cell in det.engulfed_cells:
            q1, q2 = (round(cell.x1), round(cell.y1)), (round(cell.x2), round(cell.y2))
            cv2.rectangle(out, q1, q2, (255, 255, 255), thickness)
        if det.label in CROP_CLASSES:
            cv2.putText(out, f"{det.label[:5]} {det.score:.2f}", (p1[0], max(10, p1[1] - 4)),
                        cv2.FONT_HERSHEY_SIMPLEX, 0.4, color, 1, cv2.LINE_AA)  # fmt: skip
    return out


def crop_detection(image: np.ndarray, det: Detection, margin: float = 0.25) -> np.ndarray:
    """HWC uint8 RGB crop around ``det`` with ``margin`` (fraction of its size) on each side."""
    h, w = image.shape[:2]
    mx, my = (det.x2 - det.x1) * margin, (det.y2 - det.y1) * margin
    x1, y1 = max(0, int(det.x1 - mx)), max(0, int(det.y1 - my))
    x2, y2 = min(w, int(np.ceil(det.x2 + mx))), min(h, int(np.ceil(det.y2 + my)))
    return image[y1:y2, x1:x2].copy()


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    """Encode in memory, then write with Python, so a failed write raises its ``OSError``
    (``cv2.imwrite`` only returns ``False``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    ok, data = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 90])
    if not ok:
        raise OSError(f"cannot encode {path} as JPEG")
    path.write_bytes(data.tobytes())


def overlay_path(out_dir: Path, tile: str) -> Path:
    """Where the overlay of ``tile`` goes: one file per tile name, never shared (see
    :func:`~hemoscan.io.files.unique_stem`)."""
    return out_dir / "overlays" / f"{unique_stem(tile)}.jpg"


def save_overlay(
    out_dir: Path, tile: str, image: np.ndarray, detections: tuple[Detection, ...]
) -> Path:
    path = overlay_path(out_dir, tile)
    _write_jpeg(path, draw_overlay(image, detections))
    return path


def crop_path(out_dir: Path, sample: str, tile: str, label: str, index: int) -> Path:
    """Where the crop of detection number ``index`` (order in ``detections.jsonl``) goes."""
    folder = out_dir / "crops" / unique_stem(sample) / label
    return folder / f"{unique_stem(tile)}__{index:04d}.jpg"


def save_crops(
    out_dir: Path, sample: str, tile: str, image: np.ndarray, detections: tuple[Detection, ...]
) -> list[Path]:
    paths = []
    for i, det in enumerate(detections):
        if det.label in CROP_CLASSES:
            path = crop_path(out_dir, sample, tile, det.label, i)
            _write_jpeg(path, crop_detection(image, det))
            paths.append(path)
    return paths


def render_crop(image: np.ndarray, det: Detection, side: int = CROP_SIDE_PX) -> np.ndarray:
    """The detection's crop with its box (green; :data:`HOST_COLOUR`) and engulfed cells (white;
    :data:`ENGULFED_COLOUR`), resized so its longer side is ``side`` px."""
    crop = crop_detection(image, det).copy()
    mx, my = (det.x2 - det.x1) * 0.25, (det.y2 - det.y1) * 0.25
    ox, oy = max(0, int(det.x1 - mx)), max(0, int(det.y1 - my))
    cv2.rectangle(crop, (round(det.x1 - ox), round(det.y1 - oy)), (round(det.x2 - ox), round(det.y2 - oy)),
                  HOST_COLOUR, 2)  # fmt: skip
    for c in det.engulfed_cells:
        cv2.rectangle(crop, (round(c.x1 - ox), round(c.y1 - oy)), (round(c.x2 - ox), round(c.y2 - oy)),
                      ENGULFED_COLOUR, 1)  # fmt: skip
    longest = max(crop.shape[:2])
    if longest and longest != side:
        f = side / longest
        crop = cv2.resize(
            crop, (max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f)))
        )
    return crop


def find_file(path: str, base_dirs: list[Path]) -> list[Path]:
    """Where a tile or slide path of a scan may be: itself if absolute, else under each base."""
    return [Path(path)] if Path(path).is_absolute() else [b / path for b in base_dirs]


def read_tile_image(tile: str, base_dirs: list[Path]) -> np.ndarray | None:
    """A plain tile as the scan read it (HWC uint8 RGB), or ``None`` if it cannot be read now."""
    for path in find_file(tile, base_dirs):
        try:
            return read_tile(path)
        except HemoscanError:
            continue
    return None


def shifted(det: Detection, dx: float, dy: float) -> Detection:
    """``det`` (and its engulfed cells) moved by ``(-dx, -dy)``."""
    cells = tuple(
        replace(c, x1=c.x1 - dx, y1=c.y1 - dy, x2=c.x2 - dx, y2=c.y2 - dy)
        for c in det.engulfed_cells
    )
    return replace(det, x1=det.x1 - dx, y1=det.y1 - dy, x2=det.x2 - dx, y2=det.y2 - dy,
                   engulfed_cells=cells)  # fmt: skip


def read_slide_window(
    slide_path: str, box: tuple[float, float, float, float], base_dirs: list[Path]
) -> tuple[np.ndarray, int, int] | None:
    """The level-0 pixels of ``box`` (``x1, y1, x2, y2``, clipped to the slide) and the window's
    origin, read from the slide around it only; ``None`` if the slide cannot be read now."""
    for path in find_file(slide_path, base_dirs):
        try:
            slide = open_cached(str(path))
            width, height = slide.size
            x0, y0 = max(0, math.floor(box[0])), max(0, math.floor(box[1]))
            x1, y1 = min(width, math.ceil(box[2])), min(height, math.ceil(box[3]))
            return slide.read_region(x0, y0, x1 - x0, y1 - y0), x0, y0
        except (HemoscanError, ValueError):
            continue
    return None


def slide_crop(
    slide_path: str, det: Detection, base_dirs: list[Path], side: int = CROP_SIDE_PX
) -> np.ndarray | None:
    """:func:`render_crop` of a detection in level-0 slide pixels, read from the slide."""
    mx, my = (det.x2 - det.x1) * 0.3 + 2, (det.y2 - det.y1) * 0.3 + 2
    window = read_slide_window(slide_path, (det.x1 - mx, det.y1 - my, det.x2 + mx, det.y2 + my),
                               base_dirs)  # fmt: skip
    if window is None:
        return None
    image, x0, y0 = window
    return render_crop(image, shifted(det, x0, y0), side)
