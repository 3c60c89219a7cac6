"""Exports of scan results for other tools: QuPath GeoJSON per tile and COCO detection results.

Coordinates are tile pixels (origin top-left, y down), as in :mod:`hemoscan.datamodel`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hemoscan.datamodel import CELL_CLASSES, NUCLEATED_SUBTYPES, Detection, TileResult
from hemoscan.io.files import atomic_write_json, safe_stem, short_hash

CLASS_COLORS: dict[str, tuple[int, int, int]] = {
    "rbc": (220, 40, 40),
    "platelet": (150, 60, 200),
    "nucleated": (40, 90, 220),
    "macrophage": (245, 140, 20),
    "hemophagocyte": (40, 230, 60),
}
_FALLBACK_COLOR: tuple[int, int, int] = (128, 128, 128)


def _color(label: str) -> list[int]:
    return list(CLASS_COLORS.get(label, _FALLBACK_COLOR))


def _engulfed_color(label: str) -> list[int]:
    base = "nucleated" if label in NUCLEATED_SUBTYPES else label
    return [c // 2 for c in CLASS_COLORS.get(base, _FALLBACK_COLOR)]


def _polygon(x1: float, y1: float, x2: float, y2: float) -> dict[str, Any]:
    x1, y1, x2, y2 = (round(v, 2) for v in (x1, y1, x2, y2))
    ring = [[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]]
    return {"type": "Polygon", "coordinates": [ring]}


def _feature(
    fid: str,
    geometry: dict[str, Any],
    name: str,
    color: list[int],
    measurements: dict[str, float],
    **extra: Any,
) -> dict[str, Any]:
    props: dict[str, Any] = {
        "objectType": "detection",
        "classification": {"name": name, "color": color},
        "isLocked": False,
        "measurements": measurements,
        **extra,
    }
    return {"type": "Feature", "id": fid, "geometry": geometry, "properties": props}


def _tile_features(result: TileResult) -> list[dict[str, Any]]:
    features: list[dict[str, Any]] = []
    for i, det in enumerate(result.detections):
        fid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"hemoscan:{result.tile}#{i}"))
        measurements: dict[str, float] = {"score": round(det.score, 5)}
        engulfed = det.engulfed
        if engulfed is not None:
            measurements.update({f"engulfed_{k}": v for k, v in engulfed.items()})
        geometry = _polygon(det.x1, det.y1, det.x2, det.y2)
        features.append(_feature(fid, geometry, det.label, _color(det.label), measurements))
        for j, cell in enumerate(det.engulfed_cells):
            cid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"hemoscan:{result.tile}#{i}/{j}"))
            features.append(
                _feature(
                    cid,
                    _polygon(cell.x1, cell.y1, cell.x2, cell.y2),
                    f"engulfed_{cell.label}",
                    _engulfed_color(cell.label),
                    {"score": round(cell.score, 5)},
                    parent_id=fid,
                )
            )
    return features


def write_geojson(results: Iterable[TileResult], out_dir: Path) -> list[Path]:
    """Writes one QuPath-importable GeoJSON FeatureCollection per ok tile.

    Files go to ``out_dir/"geojson"/<name>.geojson``, ``<name>`` being the tile path with its
    parts joined by ``__`` and unsafe characters replaced; names that would clash get a hash
    of the tile path appended. Engulfed cells become their own ``engulfed_<type>`` detections
    with a ``parent_id`` property naming their hemophagocyte. Returns the paths written.
    """
    geo_dir = Path(out_dir) / "geojson"
    used: set[str] = set()
    written: list[Path] = []
    for result in results:
        if not result.ok:
            continue
        base = stem = safe_stem(result.tile)
        n = 1
        while stem.lower() in used:
            stem = f"{base}-{short_hash(result.tile)}" + (f"-{n}" if n > 1 else "")
            n += 1
        used.add(stem.lower())
        path = geo_dir / f"{stem}.geojson"
        atomic_write_json(path, {"type": "FeatureCollection", "features": _tile_features(result)})
        written.append(path)
    return written


def _coco_result(image_id: int, det: Detection) -> dict[str, Any]:
    if det.label not in CELL_CLASSES:
        raise ValueError(f"detection label {det.label!r} is not one of {CELL_CLASSES}")
    x1, y1, x2, y2 = (round(v, 2) for v in (det.x1, det.y1, det.x2, det.y2))
    d: dict[str, Any] = {
        "image_id": image_id,
        "category_id": CELL_CLASSES.index(det.label) + 1,
        "bbox": [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)],
        "score": round(det.score, 5),
    }
    if det.engulfed is not None:
        d["engulfed"] = det.engulfed
    return d


def write_coco(results: Iterable[TileResult], out_dir: Path) -> tuple[Path, Path]:
    """Writes ``coco_images.json`` (dataset skeleton of ok tiles, ids 1..N in order given) and
    ``coco_detections.json`` (COCO results list) to ``out_dir``; returns both paths.

    Load with ``COCO(images).loadRes(detections)``; note pycocotools' ``loadRes`` cannot
    read an empty results list.
    """
    out_dir = Path(out_dir)
    images: list[dict[str, Any]] = []
    detections: list[dict[str, Any]] = []
    for result in results:
        if not result.ok:
            continue
        image_id = len(images) + 1
        images.append(
            {
                "id": image_id,
                "file_name": result.tile,
                "width": result.width,
                "height": result.height,
            }
        )
        detections.extend(_coco_result(image_id, det) for det in result.detections)
    categories = [
        {"id": i + 1, "name": c, "supercategory": "cell"} for i, c in enumerate(CELL_CLASSES)
    ]
    images_path = out_dir / "coco_images.json"
    dets_path = out_dir / "coco_detections.json"
    atomic_write_json(images_path, {"images": images, "categories": categories, "annotations": []})
    atomic_write_json(dets_path, detections)
    return images_path, dets_path
