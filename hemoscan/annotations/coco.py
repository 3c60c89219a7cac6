"""COCO instances JSON (``images``, ``annotations``, ``categories``).

``bbox`` is ``[x, y, w, h]`` in pixels with the top-left corner of the image at ``(0, 0)``
(COCO's convention is already hemoscan's), so ``x1, y1, x2, y2 = x, y, x + w, y + h``. An
annotation without a ``bbox`` takes the bounding box of its polygon ``segmentation``.
``iscrowd: 1`` (or a non-zero ``ignore`` field) makes the box an ignore region. ``class_map``
is looked up by category name, then by category id. A top-level ``supervised`` list (category
names; a hemoscan extension, written by ``hemoscan review --export``) states the classes labelled
exhaustively, used unless the spec lists them itself. Every image listed is a record, with or
without annotations (an image without annotations is a fully labelled empty field).

Images are ``<images folder>/<file_name>`` (or the file's base name in that folder); the size
recorded in the JSON must match the file's.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hemoscan.annotations._common import (
    Draft,
    finalize,
    image_size,
    listing,
    parse_options,
    warn,
)
from hemoscan.annotations.record import DROP, IGNORE, AnnotatedImage, AnnotationError
from hemoscan.annotations.spec import DatasetSpec


@dataclass(frozen=True)
class CocoOptions:
    """``missing_images``: ``"error"`` (default) or ``"skip"`` (with a warning) for listed
    images that are not on disk."""

    missing_images: str = "error"

    def __post_init__(self) -> None:
        if self.missing_images not in ("error", "skip"):
            raise ValueError(
                f"missing_images must be 'error' or 'skip', not {self.missing_images!r}"
            )


def _json_path(spec: DatasetSpec) -> Path:
    if spec.labels is not None:
        path = spec.path(spec.labels)
    elif spec.root.is_file():
        path = spec.root
    else:
        candidates = []
        if spec.split:
            candidates += [
                spec.root / "annotations" / f"instances_{spec.split}.json",
                spec.root / "annotations" / f"{spec.split}.json",
                spec.root / f"{spec.split}.json",
            ]
        candidates += [spec.root / "annotations.json", spec.root / "instances.json"]
        found = [p for p in candidates if p.is_file()]
        if not found:
            jsons = sorted(spec.root.glob("*.json")) + sorted(
                (spec.root / "annotations").glob("*.json")
            )
            if len(jsons) != 1:
                raise AnnotationError(
                    f"dataset {spec.name}: set 'labels' to the COCO JSON file "
                    f"(found {len(jsons)} .json files in {spec.root})"
                )
            found = jsons
        path = found[0]
    if not path.is_file():
        raise AnnotationError(f"dataset {spec.name}: COCO file {path} does not exist")
    return path


def _image_dir(spec: DatasetSpec, json_path: Path) -> Path:
    if spec.images is not None:
        path = spec.path(spec.images)
        if not path.is_dir():
            raise AnnotationError(f"dataset {spec.name}: image folder {path} does not exist")
        return path
    base = spec.root if spec.root.is_dir() else json_path.parent
    for d in ("images", "."):
        path = base / d if d != "." else base
        if spec.split:
            if (path / spec.split).is_dir():
                return path / spec.split
        elif path.is_dir():
            return path
    return json_path.parent


def _number(value: Any, where: str, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise AnnotationError(f"{where}: {what} must be a finite number, got {value!r}")
    return float(value)


def _bbox(ann: dict[str, Any], where: str) -> tuple[float, float, float, float]:
    bbox = ann.get("bbox")
    if bbox is not None:
        if not isinstance(bbox, list) or len(bbox) != 4:
            raise AnnotationError(f"{where}: bbox must be [x, y, w, h], got {bbox!r}")
        x, y, w, h = (_number(v, where, "bbox") for v in bbox)
        if w <= 0 or h <= 0:
            raise AnnotationError(f"{where}: bbox {bbox} has no area (w and h must be > 0)")
        return (x, y, x + w, y + h)
    seg = ann.get("segmentation")
    if isinstance(seg, list) and seg and all(isinstance(p, list) and len(p) >= 6 for p in seg):
        xs = [_number(v, where, "segmentation") for p in seg for v in p[0::2]]
        ys = [_number(v, where, "segmentation") for p in seg for v in p[1::2]]
        return (min(xs), min(ys), max(xs), max(ys))
    raise AnnotationError(f"{where}: annotation has neither a bbox nor a polygon segmentation")


def read_coco(spec: DatasetSpec) -> list[AnnotatedImage]:
    """Read a COCO instances file (see the module docstring) into one record per image."""
    opts = parse_options(CocoOptions, spec)
    json_path = _json_path(spec)
    try:
        data = json.loads(json_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise AnnotationError(f"{json_path}: not a readable JSON file: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise AnnotationError(f"{json_path}: not a COCO instances file (no 'images' list)")
    image_dir = _image_dir(spec, json_path)
    categories: dict[int, str] = {}
    for cat in data.get("categories") or []:
        try:
            categories[int(cat["id"])] = str(cat["name"])
        except (KeyError, TypeError, ValueError):
            raise AnnotationError(
                f"{json_path}: category without an id and name: {cat!r}"
            ) from None

    drafts: dict[Any, Draft] = {}
    missing: list[str] = []
    skipped: set[Any] = set()
    for entry in data["images"]:
        where = f"{json_path}: image {entry.get('id') if isinstance(entry, dict) else entry!r}"
        if not isinstance(entry, dict) or "id" not in entry or "file_name" not in entry:
            raise AnnotationError(f"{where}: an image needs 'id' and 'file_name'")
        image_id = entry["id"]
        if not isinstance(image_id, (int, str)):
            raise AnnotationError(f"{where}: image id {image_id!r} is not an id")
        if image_id in drafts or image_id in skipped:
            raise AnnotationError(f"{where}: image id listed twice")
        rel = Path(str(entry["file_name"]))
        path = image_dir / rel
        if not path.is_file() and (image_dir / rel.name).is_file():
            path = image_dir / rel.name
        if not path.is_file():
            if opts.missing_images == "error":
                raise AnnotationError(f"{where}: image file {path} not found")
            missing.append(str(rel))
            skipped.add(image_id)
            continue
        w, h = image_size(path)
        jw, jh = entry.get("width"), entry.get("height")
        if jw and jh and (int(jw), int(jh)) != (w, h):
            raise AnnotationError(
                f"{where}: JSON says {jw}x{jh} but {path} is {w}x{h}; were the images resized?"
            )
        drafts[image_id] = Draft(path, w, h, source=json_path)
    if missing:
        warn(
            f"dataset {spec.name}: skipped {len(missing)} images not found in {image_dir}: "
            f"{listing(missing)}"
        )

    for k, ann in enumerate(data.get("annotations") or []):
        where = f"{json_path}: annotation {ann.get('id', f'#{k}') if isinstance(ann, dict) else k}"
        if not isinstance(ann, dict):
            raise AnnotationError(f"{where}: not an object")
        image_id = ann.get("image_id")
        if not isinstance(image_id, (int, str)):
            raise AnnotationError(f"{where}: image_id {image_id!r} is not an id")
        if image_id in skipped:
            continue
        draft = drafts.get(image_id)
        if draft is None:
            raise AnnotationError(f"{where}: image_id {image_id!r} is not in 'images'")
        cat_id = ann.get("category_id")
        try:
            name = categories[int(cat_id)]
        except (KeyError, TypeError, ValueError):
            raise AnnotationError(
                f"{where}: category_id {cat_id!r} is not in 'categories'"
            ) from None
        target = spec.map_class((name, cat_id), where)
        crowd = bool(ann.get("iscrowd", 0)) or bool(ann.get("ignore", 0))
        draft.add(_bbox(ann, where), IGNORE if crowd and target != DROP else target)
    declared = data.get("supervised")
    if declared is not None:
        if not isinstance(declared, list) or not all(isinstance(c, str) for c in declared):
            raise AnnotationError(f"{json_path}: 'supervised' must be a list of category names")
        mapped = [spec.map_class((c,), f"{json_path}: supervised") for c in declared]
        declared = [c for c in mapped if c not in (IGNORE, DROP)]
    return finalize(spec, list(drafts.values()), declared)
