"""Evidence images: detections drawn over a tile, and crops of the cells behind a count."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from hemoscan.datamodel import REVIEWED_CLASSES, Detection
from hemoscan.io.exports import CLASS_COLORS
from hemoscan.io.files import unique_stem

#: Classes whose every detection gets a crop with ``--save-crops`` (rare, reviewed by a person).
CROP_CLASSES = REVIEWED_CLASSES


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
