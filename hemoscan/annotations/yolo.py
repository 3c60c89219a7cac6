"""YOLO txt labels (Ultralytics layout): one ``<stem>.txt`` per image.

Each line is ``class cx cy w h`` (box centre and size as fractions of the image width and
height, origin top-left) or an Ultralytics segmentation polygon ``class x1 y1 x2 y2 ...``
(fractions too; its bounding box is used). Pixels: ``x1 = (cx - w / 2) * width`` etc.

Layout: ``images/<split>/...`` mirrored by ``labels/<split>/...`` (the last ``images`` folder
in the image path replaced by ``labels``), or labels beside the images. An image without a
label file has no objects (Ultralytics' background images); their number is warned. Label
files that match no image (``classes.txt``, leftovers) are skipped with a warning naming them.

Class names: ``class_map`` is looked up by class id (``"0"``), then by the class's name from
``options.names``, a ``data.yaml``/``dataset.yaml`` ``names`` entry in the dataset root, or a
``classes.txt`` (one name per line) in the label folder, its parent or the root.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

from hemoscan.annotations._common import (
    Draft,
    finalize,
    find_dir,
    paired_drafts,
    parse_options,
)
from hemoscan.annotations.record import AnnotatedImage, AnnotationError
from hemoscan.annotations.spec import DatasetSpec

#: Normalised values may exceed [0, 1] by this much (labelling-tool rounding) before a file
#: is refused as holding pixel coordinates; the boxes are then clipped by validation.
NORMALISED_SLACK = 0.01


@dataclass(frozen=True)
class YoloOptions:
    """``names``: class names by id, overriding any ``data.yaml`` / ``classes.txt``."""

    names: Sequence[str] | None = None


def _label_dir(spec: DatasetSpec, image_dir: Path) -> Path:
    if spec.labels is not None:
        path = spec.path(spec.labels)
        if not path.is_dir():
            raise AnnotationError(f"dataset {spec.name}: label folder {path} does not exist")
        return path
    parts = image_dir.parts
    if "images" in parts:
        i = len(parts) - 1 - parts[::-1].index("images")
        mirror = Path(*parts[:i], "labels", *parts[i + 1 :])
        if mirror.is_dir():
            return mirror
    return image_dir


def _yaml_names(path: Path) -> list[str] | None:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise AnnotationError(f"{path}: cannot read: {e}") from None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        return [str(names[k]) for k in sorted(names, key=int)]
    if isinstance(names, list):
        return [str(n) for n in names]
    return None


def class_names(spec: DatasetSpec, label_dir: Path, opts: YoloOptions) -> list[str] | None:
    """Class names by id, from the options, a data.yaml or a classes.txt; None if none."""
    if opts.names is not None:
        return [str(n) for n in opts.names]
    for name in ("data.yaml", "dataset.yaml", "data.yml"):
        path = spec.root / name
        if path.is_file() and (names := _yaml_names(path)) is not None:
            return names
    for folder in (label_dir, label_dir.parent, spec.root):
        path = folder / "classes.txt"
        if path.is_file():
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
            return [ln.strip() for ln in lines if ln.strip()]
    return None


def _parse_line(line: str, where: str) -> tuple[int, list[float]]:
    parts = line.split()
    n = len(parts)
    if n != 5 and (n < 7 or n % 2 == 0):
        raise AnnotationError(
            f"{where}: expected 'class cx cy w h' or a polygon 'class x1 y1 x2 y2 x3 y3 ...' "
            f"(normalised), got {n} fields: {line.strip()!r}"
        )
    try:
        cls_f = float(parts[0])
        values = [float(v) for v in parts[1:]]
    except ValueError:
        raise AnnotationError(f"{where}: non-numeric field in {line.strip()!r}") from None
    if not cls_f.is_integer() or cls_f < 0:
        raise AnnotationError(f"{where}: class id {parts[0]!r} is not a non-negative integer")
    if not all(math.isfinite(v) for v in values):
        raise AnnotationError(f"{where}: non-finite value in {line.strip()!r}")
    if any(v < -NORMALISED_SLACK or v > 1 + NORMALISED_SLACK for v in values):
        raise AnnotationError(
            f"{where}: values must be fractions of the image size in [0, 1] (normalised); "
            f"these look like pixels: {line.strip()!r}"
        )
    return int(cls_f), values


def _to_box(values: list[float], w: int, h: int, where: str) -> tuple[float, float, float, float]:
    if len(values) == 4:
        cx, cy, bw, bh = values
        if bw <= 0 or bh <= 0:
            raise AnnotationError(
                f"{where}: box width and height must be positive, got {bw} x {bh}"
            )
        return ((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h)
    xs, ys = values[0::2], values[1::2]
    return (min(xs) * w, min(ys) * h, max(xs) * w, max(ys) * h)


def read_yolo(spec: DatasetSpec) -> list[AnnotatedImage]:
    """Read a YOLO dataset (see the module docstring) into one record per image."""
    opts = parse_options(YoloOptions, spec)
    image_dir = find_dir(spec, spec.images, ("images", "."), "image")
    label_dir = _label_dir(spec, image_dir)
    names = class_names(spec, label_dir, opts)
    drafts: list[Draft] = []
    for draft, label in paired_drafts(
        spec, image_dir, label_dir, (".txt",), stray_what=".txt files", missing_what="label file"
    ):
        drafts.append(draft)
        if label is None:
            continue
        try:
            text = label.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as e:
            raise AnnotationError(f"{label}: cannot read: {e}") from None
        for lineno, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            where = f"{label}:{lineno}"
            cls, values = _parse_line(line, where)
            name = names[cls] if names is not None and cls < len(names) else None
            target = spec.map_class((cls, name), where)
            draft.add(_to_box(values, draft.width, draft.height, where), target)
    return finalize(spec, drafts)
