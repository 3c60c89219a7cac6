"""Exports of scan results for other tools: QuPath GeoJSON per tile and COCO detection results.

Coordinates are tile pixels (origin top-left, y down), as in :mod:`hemoscan.datamodel`. The
regions of a whole-slide image (tiles named by :func:`hemoscan.io.regions.region_name`) are
exported together, as one image: the slide, in level-0 slide pixels, so the GeoJSON overlays
the slide when imported in QuPath.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from hemoscan.datamodel import (
    CELL_CLASSES,
    NUCLEATED_SUBTYPES,
    REVIEWED_CLASSES,
    Detection,
    TileResult,
    describe_engulfed,
    detection_id,
)
from hemoscan.io.files import atomic_write_json, atomic_writer, safe_stem, short_hash
from hemoscan.io.regions import parse_region_name

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
    class_name: str,
    color: list[int],
    measurements: dict[str, float],
    **extra: Any,
) -> dict[str, Any]:
    props: dict[str, Any] = {
        "objectType": "detection",
        "classification": {"name": class_name, "color": color},
        "isLocked": False,
        "measurements": measurements,
        **extra,
    }
    return {"type": "Feature", "id": fid, "geometry": geometry, "properties": props}


def object_uuid(hemoscan_id: str) -> str:
    """The QuPath object ID (a UUID, as QuPath requires) of the object with ``hemoscan_id``."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"hemoscan:{hemoscan_id}"))


def engulfed_id(host_id: str, index: int) -> str:
    """The id of the ``index``-th engulfed cell of the detection ``host_id``: ``<host id>/<index>``."""
    return f"{host_id}/{index}"


def _tile_features(result: TileResult) -> list[dict[str, Any]]:
    """Features of one tile's detections. What QuPath keeps on import and writes back on export
    carries the links: the feature ``id`` (a UUID derived from the detection id: the object's
    ID), ``properties.name`` (a host's label, detection id and contents; an engulfed cell's
    host by its detection id) and ``properties.metadata`` (string values: ``hemoscan_id``,
    the detection id of ``detections.jsonl``; ``detection``; ``host_id`` for engulfed cells).
    ``parent_id`` is kept for other readers; QuPath drops it."""
    features: list[dict[str, Any]] = []
    for i, det in enumerate(result.detections):
        ref = f"{result.tile}#{i}"
        hid = detection_id(result.sample, result.tile, i)
        fid = object_uuid(hid)
        measurements: dict[str, float] = {"score": round(det.score, 5)}
        engulfed = det.engulfed
        extra: dict[str, Any] = {}
        if engulfed is not None:
            measurements.update({f"engulfed_{k}": v for k, v in engulfed.items()})
            extra["name"] = f"{det.label} {hid}: {describe_engulfed(engulfed)}"
        elif det.label in REVIEWED_CLASSES:
            extra["name"] = f"{det.label} {hid}"
        extra["metadata"] = {"hemoscan_id": hid, "detection": ref}
        geometry = _polygon(det.x1, det.y1, det.x2, det.y2)
        color = _color(det.label)
        features.append(_feature(fid, geometry, det.label, color, measurements, **extra))
        for j, cell in enumerate(det.engulfed_cells):
            cid = engulfed_id(hid, j)
            features.append(
                _feature(
                    object_uuid(cid),
                    _polygon(cell.x1, cell.y1, cell.x2, cell.y2),
                    f"engulfed_{cell.label}",
                    _engulfed_color(cell.label),
                    {"score": round(cell.score, 5)},
                    name=f"engulfed {cell.label} in {det.label} {hid}",
                    metadata={"hemoscan_id": cid, "detection": f"{ref}/{j}", "host_id": hid},
                    parent_id=fid,
                )
            )
    return features


def _images(results: Iterable[TileResult]) -> list[tuple[str, str, list[TileResult]]]:
    """Ok results grouped into exported images, in order of first appearance:
    ``(sample, name, results)``, a plain tile alone (named by its path), the regions of a
    whole-slide image together (named by the slide's path)."""
    groups: dict[tuple[str, str, bool], list[TileResult]] = {}
    for result in results:
        if not result.ok:
            continue
        parsed = parse_region_name(result.tile)
        name = result.tile if parsed is None else parsed[0]
        key = (result.sample, name, parsed is not None)
        groups.setdefault(key, []).append(result)
    return [(sample, name, group) for (sample, name, _), group in groups.items()]


def _write_collection(path: Path, features: Iterator[dict[str, Any]]) -> None:
    """A GeoJSON FeatureCollection, written feature by feature (a slide's can be large)."""
    with atomic_writer(path) as f:
        f.write('{"type": "FeatureCollection", "features": [')
        for i, feature in enumerate(features):
            f.write((", " if i else "") + json.dumps(feature, ensure_ascii=False))
        f.write("]}\n")


def write_geojson(results: Iterable[TileResult], out_dir: Path) -> list[Path]:
    """Writes one QuPath-importable GeoJSON FeatureCollection per ok tile, and one per
    whole-slide image holding the detections of all its regions (level-0 slide pixels).

    Files go to ``out_dir/"geojson"/<name>.geojson``, ``<name>`` being the tile's (or slide's)
    path with its parts joined by ``__`` and unsafe characters replaced; names that would
    clash get a hash of the path appended. Engulfed cells become their own
    ``engulfed_<type>`` detections linked to their hemophagocyte (see :func:`_tile_features`).
    Returns the paths written.
    """
    geo_dir = Path(out_dir) / "geojson"
    used: set[str] = set()
    written: list[Path] = []
    for _, name, group in _images(results):
        base = stem = safe_stem(name)
        n = 1
        while stem.lower() in used:
            stem = f"{base}-{short_hash(name)}" + (f"-{n}" if n > 1 else "")
            n += 1
        used.add(stem.lower())
        path = geo_dir / f"{stem}.geojson"
        _write_collection(path, (f for result in group for f in _tile_features(result)))
        written.append(path)
    return written


def _coco_result(image_id: int, det: Detection, hemoscan_id: str) -> dict[str, Any]:
    if det.label not in CELL_CLASSES:
        raise ValueError(f"detection label {det.label!r} is not one of {CELL_CLASSES}")
    x1, y1, x2, y2 = (round(v, 2) for v in (det.x1, det.y1, det.x2, det.y2))
    d: dict[str, Any] = {
        "image_id": image_id,
        "category_id": CELL_CLASSES.index(det.label) + 1,
        "bbox": [x1, y1, round(x2 - x1, 2), round(y2 - y1, 2)],
        "score": round(det.score, 5),
        "hemoscan_id": hemoscan_id,
    }
    if det.engulfed is not None:
        d["engulfed"] = det.engulfed
    return d


def write_coco(
    results: Iterable[TileResult], out_dir: Path, slides: Sequence[Mapping[str, Any]] = ()
) -> tuple[Path, Path]:
    """Writes ``coco_images.json`` (dataset skeleton of ok tiles, ids 1..N in order given) and
    ``coco_detections.json`` (COCO results list, each with its ``hemoscan_id``) to ``out_dir``; returns both paths.

    A whole-slide image is one COCO image (``file_name`` its path, boxes in level-0 pixels);
    its width and height come from its record in ``slides`` (``run.json``'s), else from the
    extent of its scanned regions. Load with ``COCO(images).loadRes(detections)``; note
    pycocotools' ``loadRes`` cannot read an empty results list.
    """
    out_dir = Path(out_dir)
    sizes = {(r["sample"], r["slide"]): (r["width"], r["height"]) for r in slides}
    images: list[dict[str, Any]] = []
    detections: list[dict[str, Any]] = []
    for sample, name, group in _images(results):
        image_id = len(images) + 1
        if parse_region_name(group[0].tile) is None:
            width, height = group[0].width, group[0].height
        else:
            cores = [parse_region_name(r.tile) for r in group]
            extent = (max(c[1] + c[3] for c in cores if c), max(c[2] + c[4] for c in cores if c))
            width, height = sizes.get((sample, name), extent)
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        for result in group:
            detections.extend(_coco_result(image_id, det, detection_id(result.sample, result.tile, i))
                              for i, det in enumerate(result.detections))  # fmt: skip
    categories = [
        {"id": i + 1, "name": c, "supercategory": "cell"} for i, c in enumerate(CELL_CLASSES)
    ]
    images_path = out_dir / "coco_images.json"
    dets_path = out_dir / "coco_detections.json"
    atomic_write_json(images_path, {"images": images, "categories": categories, "annotations": []})
    atomic_write_json(dets_path, detections)
    return images_path, dets_path
