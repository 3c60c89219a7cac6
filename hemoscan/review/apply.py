"""Verdicts given outside the page: a CSV (a script, a spreadsheet) or a QuPath GeoJSON.

**CSV**: a header row ``id,verdict[,label][,engulfed_rbc,engulfed_nucleated,engulfed_platelet]``
(columns in any order; without a header the columns are read in that order), then one row
per suggestion. ``verdict`` is ``accept``, ``reject`` or ``relabel`` (``label``: hemophagocyte,
macrophage, other_cell or artefact); the three engulfed counts go together, for a final
hemophagocyte (left out: the model's counts). A cell that starts with a spreadsheet's
protective ``'`` is read without it.

**QuPath GeoJSON**: the ``--export geojson`` of the scan, re-classified in QuPath and exported
again (*File > Export objects as GeoJSON*). Each hemophagocyte or macrophage is matched by its
detection id (``metadata.hemoscan_id``, the object ID hemoscan gave it, or the id in its name).
Its class now is its verdict: unchanged is ``accept``; another of hemophagocyte, macrophage,
other cell (``other_cell``, ``Other``) or artefact (``artifact``) is ``relabel``; ``reject``
(``rejected``, ``negative``, ``false positive``) is ``reject``. Its engulfed counts are the
``engulfed_*`` objects linked to it (``host_id``, or the host's id in their name, or, for objects
drawn in QuPath, the host holding their centre). A hemophagocyte or macrophage drawn in QuPath
(no id) is a cell added to the tile (or slide region) that holds its centre.

Everything is checked before anything is written: a bad row or feature is a
:class:`~hemoscan.review.log.ReviewError` naming the file, the line or feature and the id, and
nothing is recorded. Ids that name no suggestion of the scan are returned as ``unknown`` and
skipped; the rest is appended to ``review.jsonl`` in one locked write.
"""

from __future__ import annotations

import csv
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hemoscan.datamodel import REVIEWED_CLASSES, Detection
from hemoscan.io.regions import parse_region_name
from hemoscan.io.result_exports import object_uuid
from hemoscan.io.spreadsheet import restore
from hemoscan.review.index import ReviewIndex, Suggestion
from hemoscan.review.log import (
    ENGULFED_KEYS,
    FINAL_LABELS,
    ReviewError,
    ReviewLog,
    Verdict,
    new_added_id,
)

CSV_COLUMNS = ("id", "verdict", "label", *(f"engulfed_{k}" for k in ENGULFED_KEYS))
#: QuPath class names (lower case) and the final label they state.
CLASS_NAMES = {
    "hemophagocyte": "hemophagocyte", "macrophage": "macrophage", "other_cell": "other_cell",
    "other cell": "other_cell", "other": "other_cell", "artefact": "artefact", "artifact": "artefact",
    "reject": None, "rejected": None, "negative": None, "false positive": None,
}  # fmt: skip
_NAMED_ID = re.compile(r"\b(d[0-9a-f]{16})\b")


@dataclass
class Applied:
    """What an apply did: ``verdicts`` appended, ``unknown`` ids skipped, ``unchanged`` suggestions
    left pending (``only_changed``), ``missing`` suggestions of the file's images not in it."""

    verdicts: list[Verdict] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)
    unchanged: int = 0
    missing: int = 0


def _model_counts(det: Detection) -> dict[str, int]:
    return {k: (det.engulfed or {}).get(k, 0) for k in ENGULFED_KEYS}


def _verdict(s: Suggestion, verdict: str, label: str | None, engulfed: dict[str, int] | None,
             reviewer: str, source: str, where: str) -> Verdict:  # fmt: skip
    det = s.detection
    if verdict == "accept":
        if label not in (None, det.label):
            raise ReviewError(f"{where}: accept keeps the model's label {det.label}, not {label!r}; "
                              "use relabel")  # fmt: skip
        label = det.label
    if label == "hemophagocyte" and engulfed is None:
        engulfed = _model_counts(det)
    if label != "hemophagocyte" and engulfed is not None and any(engulfed.values()):
        raise ReviewError(f"{where}: engulfed counts are for a final hemophagocyte, not {label}")
    try:
        return Verdict(s.id, verdict, reviewer, s.sample, s.tile, label,
                       engulfed if label == "hemophagocyte" else None, det.label,
                       round(det.score, 5), source=source)  # fmt: skip
    except ReviewError as e:
        raise ReviewError(f"{where}: {e}") from None


# --------------------------------------------------------------------------- CSV
def _count(value: str, where: str, column: str) -> int:
    try:
        n = int(value.strip())
    except ValueError:
        raise ReviewError(f"{where}: {column} must be a whole number, got {value!r}") from None
    if not 0 <= n <= 999:
        raise ReviewError(f"{where}: {column} must be from 0 to 999, got {n}")
    return n


def read_csv_verdicts(path: Path, index: ReviewIndex, reviewer: str) -> Applied:
    """Check every row of the CSV ``path`` against ``index`` (see the module docstring)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise ReviewError(f"{path}: cannot read ({e})") from None
    rows = list(csv.reader(text.splitlines()))
    while rows and not any(c.strip() for c in rows[-1]):
        rows.pop()
    if not rows:
        raise ReviewError(f"{path}: no rows")
    header = [c.strip().lower() for c in rows[0]]
    if header and header[0] == "id":
        unknown = [c for c in header if c not in CSV_COLUMNS]
        if unknown or "verdict" not in header or len(set(header)) < len(header):
            raise ReviewError(f"{path}, line 1: the header must name columns among {', '.join(CSV_COLUMNS)} "
                              f"(id and verdict needed, each once); got {', '.join(header)}")  # fmt: skip
        columns, body, first = header, rows[1:], 2
    else:
        columns, body, first = list(CSV_COLUMNS), rows, 1
    counts = [c for c in columns if c.startswith("engulfed_")]
    if counts and len(counts) != len(ENGULFED_KEYS):
        raise ReviewError(f"{path}, line 1: give all three engulfed counts or none ({', '.join(counts)})")
    out = Applied()
    seen: dict[str, int] = {}
    source = f"csv:{path.name}"
    for number, row in enumerate(body, first):
        if not any(c.strip() for c in row):
            continue
        if len(row) > len(columns):
            raise ReviewError(f"{path}, line {number}: {len(row)} cells for {len(columns)} columns")
        cells = {c: restore(v.strip()) for c, v in zip(columns, row)}
        item_id = cells.get("id", "")
        where = f"{path}, line {number} (id {item_id!r})"
        verdict = cells.get("verdict", "").lower()
        if verdict not in ("accept", "reject", "relabel"):
            raise ReviewError(f"{where}: verdict must be accept, reject or relabel, got {verdict!r}")
        label = cells.get("label", "").lower() or None
        if label is not None and label not in FINAL_LABELS:
            raise ReviewError(f"{where}: label must be one of {', '.join(FINAL_LABELS)}, got {label!r}")
        if verdict == "relabel" and label is None:
            raise ReviewError(f"{where}: relabel needs a label")
        if verdict == "reject" and label is not None:
            raise ReviewError(f"{where}: reject takes no label (relabel states what it is)")
        given = [cells.get(c, "") for c in counts]
        if any(given) and not all(given):
            raise ReviewError(f"{where}: give all three engulfed counts or none")
        engulfed = ({k: _count(v, where, c) for k, c, v in zip(ENGULFED_KEYS, counts, given)}
                    if all(given) and given else None)  # fmt: skip
        if item_id in seen:
            raise ReviewError(f"{where}: the id is also on line {seen[item_id]}")
        seen[item_id] = number
        s = index.by_id.get(item_id)
        if s is None:
            out.unknown.append(item_id)
            continue
        if verdict == "relabel" and label == s.detection.label:
            verdict = "accept"
        out.verdicts.append(_verdict(s, verdict, label, engulfed, reviewer, source, where))
    return out


# --------------------------------------------------------------------------- GeoJSON
def _bbox(geometry: Any, where: str) -> tuple[float, float, float, float]:
    points: list[tuple[float, float]] = []

    def walk(c: Any) -> None:
        if isinstance(c, (list, tuple)) and len(c) >= 2 and all(isinstance(v, (int, float)) for v in c[:2]):
            points.append((float(c[0]), float(c[1])))
        elif isinstance(c, (list, tuple)):
            for x in c:
                walk(x)

    walk((geometry or {}).get("coordinates"))
    if not points:
        raise ReviewError(f"{where}: no geometry coordinates")
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    return min(xs), min(ys), max(xs), max(ys)


def _class_name(props: dict[str, Any]) -> str:
    c = props.get("classification")
    if isinstance(c, dict):
        return str(c.get("name") or ": ".join(c.get("names") or []) or "")
    return str(c or "")


def _feature_id(feature: dict[str, Any], props: dict[str, Any], uuids: dict[str, str]) -> str | None:
    """The hemoscan id a feature carries: metadata, then the object ID, then its name."""
    meta = props.get("metadata") if isinstance(props.get("metadata"), dict) else {}
    if meta.get("hemoscan_id"):
        return str(meta["hemoscan_id"])
    if str(feature.get("id")) in uuids:
        return uuids[str(feature["id"])]
    found = _NAMED_ID.search(str(props.get("name") or ""))
    return found.group(1) if found and not str(props.get("name", "")).startswith("engulfed") else None


def _host_of(props: dict[str, Any]) -> str | None:
    meta = props.get("metadata") if isinstance(props.get("metadata"), dict) else {}
    if meta.get("host_id"):
        return str(meta["host_id"])
    name = str(props.get("name") or "")
    found = _NAMED_ID.search(name) if name.startswith("engulfed") else None
    return found.group(1) if found else None


def read_geojson_verdicts(path: Path, index: ReviewIndex, reviewer: str,
                          only_changed: bool = False) -> Applied:  # fmt: skip
    """Check the QuPath GeoJSON ``path`` against ``index`` (see the module docstring)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise ReviewError(f"{path}: not a readable GeoJSON file ({e})") from None
    features = data.get("features") if isinstance(data, dict) else data
    if not isinstance(features, list):
        raise ReviewError(f"{path}: not a GeoJSON FeatureCollection")
    uuids = {object_uuid(i): i for i in index.by_id}
    hosts: dict[str, tuple[str, tuple[float, float, float, float], str]] = {}  # id -> class, box, where
    new_hosts: list[tuple[str, tuple[float, float, float, float], str]] = []
    engulfed: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(ENGULFED_KEYS, 0))
    loose: list[tuple[str, float, float]] = []  # engulfed objects drawn in QuPath: type, centre
    out = Applied()
    source = f"geojson:{path.name}"
    for k, feature in enumerate(features, 1):
        if not isinstance(feature, dict):
            raise ReviewError(f"{path}: feature {k} is not an object")
        props = feature.get("properties") if isinstance(feature.get("properties"), dict) else {}
        name = _class_name(props).strip()
        lower = name.lower()
        item_id = _feature_id(feature, props, uuids)
        where = f"{path}: feature {k}" + (f" (id {item_id})" if item_id else "")
        if lower.startswith("engulfed_"):
            kind = lower[len("engulfed_"):]
            kind = "nucleated" if kind in ("granulocyte", "erythroblast", "lymphocyte") else kind
            if kind not in ENGULFED_KEYS:
                raise ReviewError(f"{where}: unknown engulfed class {name!r}")
            host = _host_of(props)
            if host is not None:
                engulfed[host][kind] += 1
            else:
                x1, y1, x2, y2 = _bbox(feature.get("geometry"), where)
                loose.append((kind, (x1 + x2) / 2, (y1 + y2) / 2))
            continue
        suggestion = index.by_id.get(item_id) if item_id else None
        if item_id and suggestion is None and item_id.startswith("d"):
            if lower in CLASS_NAMES:
                out.unknown.append(item_id)
            continue
        if suggestion is not None and suggestion.detection.label not in REVIEWED_CLASSES:
            continue  # red cells, platelets, nucleated cells: not reviewed
        if lower not in CLASS_NAMES:
            if suggestion is None:
                continue  # another object the pathologist drew (an annotation, a region)
            raise ReviewError(f"{where}: class {name!r} is not one of "
                              f"{', '.join(sorted(set(CLASS_NAMES)))}")  # fmt: skip
        box = _bbox(feature.get("geometry"), where)
        if suggestion is None:
            if CLASS_NAMES[lower] in REVIEWED_CLASSES:
                new_hosts.append((CLASS_NAMES[lower] or "", box, where))
            continue
        hosts[suggestion.id] = (lower, box, where)
    for kind, cx, cy in loose:  # objects drawn in QuPath: the smallest host holding their centre
        holding = [(i, b) for i, (c, b, _) in hosts.items() if CLASS_NAMES[c] == "hemophagocyte"
                   and b[0] <= cx <= b[2] and b[1] <= cy <= b[3]]  # fmt: skip
        if holding:
            i, _ = min(holding, key=lambda ib: (ib[1][2] - ib[1][0]) * (ib[1][3] - ib[1][1]))
            engulfed[i][kind] += 1
    for item_id, (lower, _, where) in hosts.items():
        s = index.by_id[item_id]
        label = CLASS_NAMES[lower]
        counts = dict(engulfed[item_id]) if item_id in engulfed or label == "hemophagocyte" else None
        if label == s.detection.label:
            if only_changed and (label != "hemophagocyte" or counts == _model_counts(s.detection)):
                out.unchanged += 1
                continue
            out.verdicts.append(_verdict(s, "accept", label, counts, reviewer, source, where))
        elif label is None:
            out.verdicts.append(_verdict(s, "reject", None, None, reviewer, source, where))
        else:
            out.verdicts.append(_verdict(s, "relabel", label, counts if label == "hemophagocyte" else None,
                                         reviewer, source, where))  # fmt: skip
    out.verdicts += _added(index, hosts, new_hosts, reviewer, source)
    images = {_image_of(index.by_id[i]) for i in hosts}
    out.missing = sum(1 for s in index.suggestions if _image_of(s) in images and s.id not in hosts)
    return out


def _image_of(s: Suggestion) -> tuple[str, str]:
    region = parse_region_name(s.tile)
    return s.sample, s.tile if region is None else region[0]


def _added(index: ReviewIndex, hosts: dict[str, Any], new_hosts: list[Any], reviewer: str,
           source: str) -> list[Verdict]:  # fmt: skip
    """Cells drawn in QuPath: placed on the file's image (the tile, or the slide region whose
    core holds their centre)."""
    if not new_hosts:
        return []
    images = {_image_of(index.by_id[i]) for i in hosts}
    if len(images) != 1:
        raise ReviewError(f"{new_hosts[0][2]}: a cell drawn in QuPath, but the file's image is "
                          "unknown (no hemoscan suggestion in it)")  # fmt: skip
    (sample, image), = images
    out = []
    for label, box, where in new_hosts:
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        tile = None
        for (s, t) in index.tiles:
            region = parse_region_name(t)
            if s != sample:
                continue
            if region is None and t == image:
                tile = t
            elif region is not None and region[0] == image:
                _, x, y, w, h = region
                if x <= cx < x + w and y <= cy < y + h:
                    tile = t
        if tile is None:
            raise ReviewError(f"{where}: no scanned region of {image} holds this cell")
        out.append(Verdict(new_added_id(), "add", reviewer, sample, tile, label,
                           None if label != "hemophagocyte" else dict.fromkeys(ENGULFED_KEYS, 0),
                           box=box, source=source))  # fmt: skip
    return out


def apply_file(scan_dir: str | Path, path: str | Path, reviewer: str,
               only_changed: bool = False) -> Applied:  # fmt: skip
    """Read the verdicts of ``path`` (``.csv``, or ``.geojson`` / ``.json``), check them all,
    and append them to the folder's ``review.jsonl``."""
    path = Path(path)
    index = ReviewIndex(scan_dir)
    if path.suffix.lower() == ".csv":
        applied = read_csv_verdicts(path, index, reviewer)
    elif path.suffix.lower() in (".geojson", ".json"):
        applied = read_geojson_verdicts(path, index, reviewer, only_changed)
    else:
        raise ReviewError(f"{path}: give a .csv or a QuPath .geojson file")
    ReviewLog(scan_dir).append(applied.verdicts)
    return applied

