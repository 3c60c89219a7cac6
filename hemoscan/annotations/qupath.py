"""QuPath GeoJSON exports: one ``.geojson`` (or ``.json``) file per image.

Each file is a FeatureCollection, a bare list of features, or a single feature, as QuPath's
"Export objects as GeoJSON" writes. Coordinates are the full image's pixels with the origin
at the top-left corner (hemoscan's convention); a feature's box is the bounding box of its
geometry (Polygon, MultiPolygon, Rectangle, GeometryCollection; Point/MultiPoint only with
``options.point_size``, a box of that side around each point). Only features whose
``properties.objectType`` is in ``options.object_types`` (annotation, detection and cell by
default; a missing objectType counts as annotation) are read. The class is
``properties.classification.name`` looked up in ``class_map``; an unclassified feature has
the class name ``"unclassified"`` (map it to ``"drop"`` or ``"ignore"`` to use such files).

Files are paired with images by name: ``x.geojson`` or ``x.png.geojson`` for ``x.png``, and
``a__x.png.geojson`` for ``a/x.png`` (as :func:`hemoscan.io.result_exports.write_geojson` names
them). Engulfed cells: an ``engulfed_*`` feature takes as host the feature its
``properties.parent_id`` names (hemoscan's export), else the smallest ``hemophagocyte``
feature whose geometry contains its box centre.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hemoscan.annotations._common import (
    Draft,
    finalize,
    find_dir,
    paired_drafts,
    parse_options,
)
from hemoscan.annotations.record import HOST_CLASS, AnnotatedImage, AnnotationError, is_engulfed
from hemoscan.annotations.spec import DatasetSpec

UNCLASSIFIED = "unclassified"
GEOJSON_SUFFIXES: tuple[str, ...] = (".geojson", ".json")
Rings = list[np.ndarray]


@dataclass(frozen=True)
class QupathOptions:
    """``object_types``: QuPath object types to read. ``point_size``: side in pixels of the box
    put around Point geometries (points are refused without it)."""

    object_types: Sequence[str] = ("annotation", "detection", "cell")
    point_size: float | None = None

    def __post_init__(self) -> None:
        if isinstance(self.object_types, str):
            raise ValueError("object_types must be a list of strings")
        if self.point_size is not None and not self.point_size > 0:
            raise ValueError(f"point_size must be positive, got {self.point_size}")


def _coords(value: Any, where: str) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        arr = None
    if arr is None or arr.size == 0 or arr.shape[-1] < 2 or not np.isfinite(arr).all():
        raise AnnotationError(f"{where}: malformed geometry coordinates")
    return arr.reshape(-1, arr.shape[-1])[:, :2]


def _rings(geometry: Any, where: str, point_size: float | None) -> Rings:
    """Closed outlines (arrays [K, 2]) of a geometry; points become squares."""
    if not isinstance(geometry, dict):
        raise AnnotationError(f"{where}: feature without a geometry")
    kind = geometry.get("type")
    coords = geometry.get("coordinates")
    if kind == "GeometryCollection":
        return [r for g in geometry.get("geometries") or [] for r in _rings(g, where, point_size)]
    if kind in ("Polygon", "Rectangle"):
        polys = [coords]
    elif kind == "MultiPolygon":
        polys = coords if isinstance(coords, list) else [None]
    elif kind in ("Point", "MultiPoint"):
        if point_size is None:
            raise AnnotationError(
                f"{where}: {kind} geometry has no extent; set options.point_size (pixels) to "
                "read point annotations as boxes"
            )
        h = point_size / 2
        return [
            np.array([[x - h, y - h], [x + h, y - h], [x + h, y + h], [x - h, y + h]])
            for x, y in _coords(coords, where)
        ]
    else:
        raise AnnotationError(f"{where}: unsupported geometry type {kind!r} (need a polygon)")
    rings: Rings = []
    for poly in polys:
        if not isinstance(poly, list) or not poly:
            raise AnnotationError(f"{where}: malformed {kind} coordinates")
        if not (isinstance(poly[0], list) and poly[0] and isinstance(poly[0][0], list)):
            rings.append(_coords(poly, where))  # a bare ring (Rectangle, lax writers)
        else:
            rings.extend(_coords(ring, where) for ring in poly)
    return rings


def _inside(rings: Rings, x: float, y: float) -> bool:
    """Even-odd rule over all rings (holes count as outside)."""
    crossings = 0
    for ring in rings:
        xs, ys = ring[:, 0], ring[:, 1]
        xn, yn = np.roll(xs, -1), np.roll(ys, -1)
        straddle = (ys > y) != (yn > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            xcross = xs + (y - ys) * (xn - xs) / (yn - ys)
        crossings += int(np.count_nonzero(straddle & (x < xcross)))
    return crossings % 2 == 1


def _class_name(props: dict[str, Any]) -> str:
    c = props.get("classification")
    if isinstance(c, str):
        return c or UNCLASSIFIED
    if isinstance(c, dict):
        if c.get("name"):
            return str(c["name"])
        if c.get("names"):
            return ": ".join(str(n) for n in c["names"])
    return UNCLASSIFIED


def _features(data: Any, path: Path) -> list[dict[str, Any]]:
    if isinstance(data, dict) and data.get("type") == "FeatureCollection":
        data = data.get("features")
    elif isinstance(data, dict) and data.get("type") == "Feature":
        data = [data]
    if not isinstance(data, list) or not all(isinstance(f, dict) for f in data):
        raise AnnotationError(
            f"{path}: not GeoJSON (need a FeatureCollection or a list of features)"
        )
    return data


def _read_file(spec: DatasetSpec, opts: QupathOptions, path: Path, draft: Draft) -> None:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AnnotationError(f"{path}: not a readable JSON file: {e}") from None
    types = {t.lower() for t in opts.object_types}
    outlines: dict[int, Rings] = {}
    index_of_id: dict[str, int | None] = {}
    wanted_parent: dict[int, str] = {}
    for k, feature in enumerate(_features(data, path)):
        props = feature.get("properties") or {}
        fid = feature.get("id", props.get("id"))
        where = f"{path}: feature {k + 1}" + (f" (id {fid})" if fid is not None else "")
        if str(props.get("objectType", "annotation")).lower() not in types:
            continue
        rings = _rings(feature.get("geometry"), where, opts.point_size)
        if not rings:
            raise AnnotationError(f"{where}: empty geometry")
        pts = np.concatenate(rings)
        box = (
            float(pts[:, 0].min()),
            float(pts[:, 1].min()),
            float(pts[:, 0].max()),
            float(pts[:, 1].max()),
        )
        target = spec.map_class((_class_name(props),), where)
        index = draft.add(box, target)
        if fid is not None:
            index_of_id[str(fid)] = index
        if index is not None:
            outlines[index] = rings
            parent = props.get("parent_id")
            if parent is not None and is_engulfed(target):
                wanted_parent[index] = str(parent)
    for index, parent in wanted_parent.items():
        if parent not in index_of_id:
            raise AnnotationError(f"{path}: parent_id {parent!r} names no feature in this file")
        host = index_of_id[parent]
        if host is not None and draft.labels[host] == HOST_CLASS:
            draft.parents[index] = host
    draft.contains = lambda j, x, y: _inside(outlines[j], x, y)


def read_qupath(spec: DatasetSpec) -> list[AnnotatedImage]:
    """Read QuPath GeoJSON exports (see the module docstring) into one record per image."""
    opts = parse_options(QupathOptions, spec)
    image_dir = find_dir(spec, spec.images, ("images", "."), "image")
    if spec.labels is not None:
        geo_dir = find_dir(spec, spec.labels, (), "GeoJSON")
    else:
        geo_dir = next(
            (d for d in (spec.root / "geojson", spec.root / "annotations") if d.is_dir()), image_dir
        )
        if spec.split and (geo_dir / spec.split).is_dir() and geo_dir != image_dir:
            geo_dir = geo_dir / spec.split
    drafts: list[Draft] = []
    for draft, path in paired_drafts(
        spec,
        image_dir,
        geo_dir,
        GEOJSON_SUFFIXES,
        stray_what="GeoJSON files",
        missing_what="GeoJSON file",
    ):
        drafts.append(draft)
        if path is not None:
            _read_file(spec, opts, path, draft)
    return finalize(spec, drafts)
