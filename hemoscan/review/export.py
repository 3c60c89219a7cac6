"""Reviewed cells as a training set: ``hemoscan review SCAN_DIR --export coco|yolo|qupath``.

Every tile (or slide region) holding a verdict in force becomes one image, written at the
model's scale (the tile resized by the scale it was scanned at; a slide region read around its
core at the model's pixel size), so red cells are about the scanning model's
``rbc_diameter_px`` across. What each image teaches:

* **Positives**: the confirmed cells, as boxes of their final class: suggestions accepted or
  relabelled hemophagocyte / macrophage, and cells reviewers added. A confirmed hemophagocyte
  keeps the model's boxes of its engulfed cells of each type whose count the reviewer left as
  the model had it (``engulfed_rbc``, ``engulfed_nucleated``, ``engulfed_platelet``).
* **Negatives**: inside the box of every reviewed suggestion, hemophagocytes and macrophages
  are supervised (the set's ``supervised`` classes): a rejected suggestion (and one relabelled
  other cell or artefact) is taught as neither, an accepted macrophage as not a hemophagocyte.
* **Nothing else**: the rest of the image (pending suggestions, and cells no one looked at) is
  covered by ignore regions, so it is never taught as background; red cells, platelets and
  nucleated cells, which nobody reviewed, are not supervised; engulfed classes are positives only.

Formats (each with ``dataset.yaml``, a :class:`~hemoscan.annotations.DatasetSpec` for
``hemoscan evaluate --data spec:DIR/dataset.yaml`` and training configs, and ``README.txt``):
``coco``: ``images/`` and ``annotations.json`` (ignore regions are ``iscrowd`` boxes, one per
supervised class; ``supervised`` is stated in the file); ``yolo``: ``images/``, ``labels/`` and
``data.yaml`` (ignore regions as class ``ignore``); ``qupath``: ``images/`` and ``geojson/``
(ignore regions as ``ignore`` annotations; engulfed cells linked to their host by
``parent_id``).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

from hemoscan.choices import REVIEW_EXPORT_FORMATS
from hemoscan.datamodel import NUCLEATED_SUBTYPES, REVIEWED_CLASSES, Detection
from hemoscan.errors import HemoscanError
from hemoscan.io.files import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    safe_stem,
    short_hash,
)
from hemoscan.io.regions import parse_region_name
from hemoscan.io.scan_files import read_run
from hemoscan.io.scan_store import guard_writes
from hemoscan.review.index import ReviewIndex, Suggestion, TileEntry
from hemoscan.review.log import ReviewError, ReviewLog, Verdict
from hemoscan.review.status import outcome
from hemoscan.visualize import read_slide_window, read_tile_image

#: Classes whose absence the export teaches (inside reviewed cells only).
SUPERVISED: tuple[str, ...] = REVIEWED_CLASSES
ENGULFED_CLASSES = ("engulfed_rbc", "engulfed_nucleated", "engulfed_platelet")
CLASSES: tuple[str, ...] = (*REVIEWED_CLASSES, *ENGULFED_CLASSES)
IGNORE = "ignore"
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class TrainingImage:
    """One exported image: its ``pixels`` (HWC uint8 RGB, at the model's scale), ``boxes``
    (``(x1, y1, x2, y2, class, parent)`` in its pixels, ``parent`` the index of an engulfed box's
    host or -1) and ``ignore`` regions; ``source`` names the tile or region it comes from."""

    name: str
    sample: str
    source: str
    pixels: np.ndarray
    boxes: list[tuple[float, float, float, float, str, int]]
    ignore: list[Box]

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)``."""
        return self.pixels.shape[1], self.pixels.shape[0]


def complement(boxes: Iterable[Box], width: float, height: float) -> list[Box]:
    """Rectangles covering ``[0, width] x [0, height]`` outside the union of ``boxes``, without
    overlapping them: horizontal bands cut at every box edge, merged downwards while alike."""
    clipped = [(max(0.0, b[0]), max(0.0, b[1]), min(width, b[2]), min(height, b[3])) for b in boxes]
    clipped = [b for b in clipped if b[2] > b[0] and b[3] > b[1]]
    ys = sorted({0.0, float(height), *(b[1] for b in clipped), *(b[3] for b in clipped)})
    done: list[Box] = []
    open_: dict[tuple[float, float], float] = {}  # gap (x0, x1) -> the y it opened at
    for y0, y1 in zip(ys, ys[1:]):
        covered = sorted((b[0], b[2]) for b in clipped if b[1] <= y0 and b[3] >= y1)
        gaps, x = [], 0.0
        for a, b in covered:
            if a > x:
                gaps.append((x, a))
            x = max(x, b)
        if x < width:
            gaps.append((x, float(width)))
        for gap in list(open_):
            if gap not in gaps:
                done.append((gap[0], open_.pop(gap), gap[1], y0))
        for gap in gaps:
            open_.setdefault(gap, y0)
    done += [(gap[0], y, gap[1], float(height)) for gap, y in open_.items()]
    return done


def _engulfed_label(label: str) -> str:
    return "engulfed_" + ("nucleated" if label in NUCLEATED_SUBTYPES else label)


class _Reader:
    """Reads a tile or slide region at the model's scale: ``(pixels, origin, factor)`` where a
    point ``p`` of the detections' frame is at ``(p - origin) * factor`` in the pixels."""

    def __init__(self, index: ReviewIndex) -> None:
        self.index = index
        try:
            slides = read_run(index.scan_dir).get("slides", [])
        except (OSError, ValueError):
            slides = []
        self.slides = {(r["sample"], r["slide"]): r for r in slides}

    def read(self, entry: TileEntry, cells: list[Box]) -> tuple[np.ndarray, float, float, float] | None:
        region = parse_region_name(entry.tile)
        if region is None:
            image = read_tile_image(entry.tile, self.index.base_dirs())
            x0 = y0 = 0.0
            factor = entry.scale
        else:
            slide, x, y, w, h = region
            record = self.slides.get((entry.sample, slide))
            if record is None or not record.get("mpp") or not record.get("target_mpp"):
                raise ReviewError(f"{slide}: its pixel size is not recorded in run.json")
            factor = float(record["mpp"]) / float(record["target_mpp"]) * entry.scale
            box = (min([x, *(c[0] for c in cells)]) - 8, min([y, *(c[1] for c in cells)]) - 8,
                   max([x + w, *(c[2] for c in cells)]) + 8, max([y + h, *(c[3] for c in cells)]) + 8)  # fmt: skip
            window = read_slide_window(slide, box, self.index.base_dirs())
            image, x0, y0 = window if window is not None else (None, 0.0, 0.0)
        if image is None:
            return None
        if abs(factor - 1) > 1e-6:
            size = (max(1, round(image.shape[1] * factor)), max(1, round(image.shape[0] * factor)))
            fx = size[0] / image.shape[1]
            image = cv2.resize(image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)
            factor = fx
        return image, float(x0), float(y0), factor


def training_images(
    index: ReviewIndex, verdicts: Mapping[str, Verdict], warnings: list[str] | None = None
) -> Iterable[TrainingImage]:
    """The images of the export (see the module docstring), one tile at a time; a tile that
    cannot be read now is skipped with a message in ``warnings``."""
    by_tile: dict[tuple[str, str], list[Suggestion]] = defaultdict(list)
    for s in index.suggestions:
        by_tile[(s.sample, s.tile)].append(s)
    added: dict[tuple[str, str], list[Verdict]] = defaultdict(list)
    for v in verdicts.values():
        if v.added:
            added[(v.sample, v.tile)].append(v)
    reader = _Reader(index)
    names: set[str] = set()
    for key, entry in index.tiles.items():
        reviewed = [s for s in by_tile.get(key, ()) if s.id in verdicts]
        extra = added.get(key, [])
        if not reviewed and not extra:
            continue
        cells = [(s.detection.x1, s.detection.y1, s.detection.x2, s.detection.y2) for s in reviewed]
        cells += [v.box for v in extra if v.box]
        read = reader.read(entry, cells)
        if read is None:
            if warnings is not None:
                warnings.append(f"{entry.tile}: not readable now; its {len(cells)} reviewed cell(s) are left out")
            continue
        pixels, ox, oy, f = read

        def place(b: Iterable[float]) -> Box:
            x1, y1, x2, y2 = b
            return ((x1 - ox) * f, (y1 - oy) * f, (x2 - ox) * f, (y2 - oy) * f)

        boxes: list[tuple[float, float, float, float, str, int]] = []
        for s in reviewed:
            o = outcome(s, verdicts[s.id])
            if o.label not in REVIEWED_CLASSES:
                continue  # a negative: its box stays supervised, with no positive in it
            det = s.detection
            host = len(boxes)
            boxes.append((*place((det.x1, det.y1, det.x2, det.y2)), o.label, -1))
            if o.label == "hemophagocyte" and det.label == "hemophagocyte":
                boxes += _confirmed_engulfed(det, o.engulfed or {}, place, host)
        for v in extra:
            assert v.box is not None and v.label is not None
            boxes.append((*place(v.box), v.label, -1))
        height, width = pixels.shape[:2]
        supervised = [place(c) for c in cells]
        name = safe_stem(f"{entry.sample}/{Path(entry.tile).name}")
        if name.lower() in names:
            name = f"{name}-{short_hash(entry.tile)}"
        names.add(name.lower())
        yield TrainingImage(name, entry.sample, entry.tile, pixels, boxes,
                            complement(supervised, width, height))  # fmt: skip


def _confirmed_engulfed(det: Detection, final: Mapping[str, int], place: Any, host: int
                        ) -> list[tuple[float, float, float, float, str, int]]:  # fmt: skip
    """The model's engulfed boxes of each type whose count the reviewer kept."""
    model = det.engulfed or {}
    keep = {t for t in ("rbc", "nucleated", "platelet") if final.get(t) == model.get(t)}
    out = []
    for cell in det.engulfed_cells:
        label = _engulfed_label(cell.label)
        if label[len("engulfed_"):] in keep:
            out.append((*place((cell.x1, cell.y1, cell.x2, cell.y2)), label, host))
    return out


def _png(path: Path, pixels: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ReviewError(f"cannot encode {path}")
    atomic_write_bytes(path, data.tobytes())


def _r(v: float) -> float:
    return round(float(v), 2)


def _write_coco(images: list[tuple[TrainingImage, str]], out: Path) -> None:
    categories = [{"id": i + 1, "name": c, "supercategory": "cell"} for i, c in enumerate(CLASSES)]
    cat = {c: i + 1 for i, c in enumerate(CLASSES)}
    doc: dict[str, Any] = {
        "info": {"description": "hemoscan review export: confirmed cells; ignore (iscrowd) "
                                "regions cover everything not reviewed",  # fmt: skip
                 "supervised": list(SUPERVISED)},
        "supervised": list(SUPERVISED), "images": [], "annotations": [], "categories": categories,
    }  # fmt: skip
    for k, (im, file) in enumerate(images, 1):
        w, h = im.size
        doc["images"].append({"id": k, "file_name": file, "width": w, "height": h,
                              "sample": im.sample, "source": im.source})  # fmt: skip
        for x1, y1, x2, y2, label, parent in im.boxes:
            ann = {"id": len(doc["annotations"]) + 1, "image_id": k, "category_id": cat[label],
                   "bbox": [_r(x1), _r(y1), _r(x2 - x1), _r(y2 - y1)], "area": _r((x2 - x1) * (y2 - y1)),
                   "iscrowd": 0}  # fmt: skip
            doc["annotations"].append(ann)
        for x1, y1, x2, y2 in im.ignore:
            for label in SUPERVISED:  # one per class: pycocotools ignores crowds per category
                doc["annotations"].append({
                    "id": len(doc["annotations"]) + 1, "image_id": k, "category_id": cat[label],
                    "bbox": [_r(x1), _r(y1), _r(x2 - x1), _r(y2 - y1)],
                    "area": _r((x2 - x1) * (y2 - y1)), "iscrowd": 1})  # fmt: skip
    atomic_write_json(out / "annotations.json", doc)


def _write_yolo(images: list[tuple[TrainingImage, str]], out: Path) -> None:
    names = [*CLASSES, IGNORE]
    for im, file in images:
        w, h = im.size
        lines = []
        for x1, y1, x2, y2, label in [b[:5] for b in im.boxes] + [(*g, IGNORE) for g in im.ignore]:
            cx, cy, bw, bh = (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (x2 - x1) / w, (y2 - y1) / h
            lines.append(f"{names.index(label)} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}")
        atomic_write_text(out / "labels" / (Path(file).stem + ".txt"), "".join(f"{x}\n" for x in lines))
    atomic_write_text(out / "data.yaml", yaml.safe_dump({"names": names, "supervised": list(SUPERVISED)}))


def _write_qupath(images: list[tuple[TrainingImage, str]], out: Path) -> None:
    def ring(x1: float, y1: float, x2: float, y2: float) -> dict[str, Any]:
        x1, y1, x2, y2 = (_r(v) for v in (x1, y1, x2, y2))
        return {"type": "Polygon", "coordinates": [[[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]]]}

    for im, file in images:
        features = []
        for i, (x1, y1, x2, y2, label, parent) in enumerate(im.boxes):
            props: dict[str, Any] = {"objectType": "annotation", "classification": {"name": label}}
            if parent >= 0:
                props["parent_id"] = f"{im.name}#{parent}"
            features.append({"type": "Feature", "id": f"{im.name}#{i}", "geometry": ring(x1, y1, x2, y2),
                             "properties": props})  # fmt: skip
        for x1, y1, x2, y2 in im.ignore:
            features.append({"type": "Feature", "geometry": ring(x1, y1, x2, y2),
                             "properties": {"objectType": "annotation", "classification": {"name": IGNORE}}})  # fmt: skip
        atomic_write_json(out / "geojson" / (Path(file).stem + ".geojson"),
                          {"type": "FeatureCollection", "features": features})  # fmt: skip


@dataclass(frozen=True)
class ExportSummary:
    """What :func:`export_reviewed` wrote: images, positives per class, ignore regions, tiles
    skipped (unreadable now, see ``warnings``)."""

    folder: Path
    images: int
    positives: dict[str, int]
    ignore_regions: int
    warnings: tuple[str, ...]


def export_reviewed(scan_dir: str | Path, fmt: str, out: str | Path,
                    rbc_diameter_px: float | None = None) -> ExportSummary:  # fmt: skip
    """Write the reviewed cells of ``scan_dir`` to ``out`` as a ``fmt`` set (see the module
    docstring). ``rbc_diameter_px``: the scanning model's red-cell size, for the notes (read
    from its shipped config by name when ``None``, else 40)."""
    if fmt not in REVIEW_EXPORT_FORMATS:
        raise ReviewError(f"unknown export format {fmt!r}; choose from {', '.join(REVIEW_EXPORT_FORMATS)}")
    out = Path(out)
    index = ReviewIndex(scan_dir)
    log = ReviewLog(scan_dir)
    verdicts = log.latest()
    warnings: list[str] = []
    written: list[tuple[TrainingImage, str]] = []
    with guard_writes(out):
        for im in training_images(index, verdicts, warnings):
            file = f"{im.name}.png"
            _png(out / "images" / file, im.pixels)
            # keep the boxes, not the pixels: memory grows by boxes only
            written.append((replace(im, pixels=np.empty((*im.pixels.shape[:2], 0), np.uint8)), file))
        if not written:
            raise ReviewError(f"{scan_dir}: no verdict in force on a readable tile: nothing to export")
        {"coco": _write_coco, "yolo": _write_yolo, "qupath": _write_qupath}[fmt](written, out)
        rbc = rbc_diameter_px or _model_rbc_px(index)
        spec = {"format": fmt, "root": ".", "supervised": list(SUPERVISED), "name": f"reviewed {Path(scan_dir).name}"}
        if fmt == "coco":
            spec["labels"] = "annotations.json"
        atomic_write_text(out / "dataset.yaml", yaml.safe_dump(spec, sort_keys=False))
        positives = {c: sum(1 for im, _ in written for b in im.boxes if b[4] == c) for c in CLASSES}
        ignore = sum(len(im.ignore) for im, _ in written)
        atomic_write_text(out / "README.txt", _readme(scan_dir, fmt, len(written), positives, rbc, log.unreadable))
    return ExportSummary(out, len(written), positives, ignore, tuple(warnings))


def _model_rbc_px(index: ReviewIndex) -> float:
    try:
        name = read_run(index.scan_dir)["settings"]["model_name"]
        # lazy: hemoscan.models.loading imports torch (2.5 s measured) for one config value
        from hemoscan.models.loading import resolve_model_folder

        folder, _ = resolve_model_folder(name)
        return float(json.loads((folder / "config.json").read_text())["rbc_diameter_px"])
    except (HemoscanError, OSError, KeyError, ValueError, TypeError):
        return 40.0


def _readme(scan_dir: Any, fmt: str, n: int, positives: Mapping[str, int], rbc: float,
            unreadable: int) -> str:  # fmt: skip
    counts = ", ".join(f"{v} {k}" for k, v in positives.items() if v)
    return (
        f"Reviewed cells of the hemoscan scan {scan_dir}, exported as {fmt} by hemoscan review.\n"
        f"{n} image(s) (one per tile or slide region holding a verdict), at the scanning model's "
        f"scale: red cells about {rbc:g} px across (rbc_diameter_px: {rbc:g}).\n"
        f"Positives: {counts or 'none'} (confirmed: accepted, relabelled or added by a reviewer).\n"
        "Supervised: hemophagocyte and macrophage, inside the boxes of reviewed cells only: a rejected\n"
        "suggestion is a negative there. Everything else is an ignore region (pending suggestions\n"
        "and cells nobody reviewed are never taught as background); red cells, platelets and\n"
        "nucleated cells are not supervised; engulfed classes are positives only.\n"
        "Read with hemoscan: --data spec:dataset.yaml (hemoscan evaluate) or a training config entry\n"
        "(training/configs/finetune-reviewed.yaml).\n"
        + (f"{unreadable} unreadable line(s) of review.jsonl were ignored.\n" if unreadable else "")
    )
