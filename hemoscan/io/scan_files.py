"""The files of a scan's output folder: their formats, and reading them.

Written only by :class:`hemoscan.io.scan_store.ScanStore`; this module encodes and parses
their rows and lines and holds the read side (reports, review, exports), and never imports
the writer.

``tiles.csv``: one row per finished tile, columns :data:`TILE_COLUMNS`: ``status`` is
``ok`` or ``error`` (``error`` says why), ``width``/``height`` in pixels, one count column
per class of :data:`~hemoscan.datamodel.CELL_CLASSES`, ``ms`` the tile's scan time, and the
scale columns (empty when no scale was estimated; older folders lack them). Text cells are
spreadsheet-safe (:mod:`hemoscan.io.spreadsheet`) and read back exactly; file names that are
not valid UTF-8 are kept byte for byte (surrogate escapes).

``detections.jsonl``: one JSON object per detection, ``id`` (see
:func:`~hemoscan.datamodel.detection_id`), ``sample``, ``tile`` and the fields of
:meth:`~hemoscan.datamodel.Detection.to_dict`; a tile's lines are consecutive, in ordinal
order. Non-UTF-8 file names are written as ``\\udcXX`` escapes, which JSON reads back.

``run.json``: the settings that change counts, the start time, the working folder that
relative tile paths are relative to, and how each whole-slide image was scanned (``slides``).

**Reading** a folder a scan may still be writing: a last line without its newline is a write
in progress and is not read; any other unreadable line of ``detections.jsonl`` raises
:class:`~hemoscan.errors.OutputDirError` (re-running the scan command repairs the folder).
Everything is streamed except :func:`read_tiles` and :func:`read_results`.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, NamedTuple

from hemoscan.datamodel import CELL_CLASSES, Detection, ScaleEstimate, TileResult, detection_id
from hemoscan.errors import OutputDirError
from hemoscan.io.spreadsheet import neutralise, restore

DETECTIONS = "detections.jsonl"
TILES = "tiles.csv"
SUMMARY = "summary.json"
RUN = "run.json"
#: Columns every tiles.csv has had; the scale columns came later and may be missing (empty).
_REQUIRED_COLUMNS = ("sample", "tile", "status", "error", "width", "height", *CELL_CLASSES, "ms")
SCALE_COLUMNS = ("scale", "scale_source", "scale_estimate")
TILE_COLUMNS = (*_REQUIRED_COLUMNS, *SCALE_COLUMNS)
#: ``tiles.csv`` columns holding text a user or the file system supplied (spreadsheet-safe).
_TEXT_COLUMNS = frozenset({"sample", "tile", "error"})
#: Position of each class among the count columns of a row (:attr:`TileRow.counts`).
CLASS_INDEX = {c: i for i, c in enumerate(CELL_CLASSES)}
#: How the text files of the folder encode file names that are not valid UTF-8.
NAME_ERRORS = "surrogateescape"

TileKey = tuple[str, str]  # (sample, tile)


def utc_now() -> str:
    """The current time as the folder's files record it (ISO 8601, UTC, seconds)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---- tiles.csv rows ----


def csv_line(cells: list[Any]) -> bytes:
    """One ``tiles.csv`` line (CSV, ``\\r\\n``-terminated) of ``cells``, encoded."""
    buf = io.StringIO()
    csv.writer(buf).writerow(cells)
    return buf.getvalue().encode("utf-8", NAME_ERRORS)


#: The header line of ``tiles.csv`` as this version writes it.
TILES_HEADER = csv_line(list(TILE_COLUMNS))


def _scale_cells(scale: ScaleEstimate | None) -> list[Any]:
    if scale is None:
        return ["", "", ""]
    estimate = "" if scale.estimate is None else round(scale.estimate, 4)
    return [round(scale.scale, 4), scale.source, estimate]


def tile_row_line(result: TileResult) -> bytes:
    """The ``tiles.csv`` line of a finished tile."""
    counts = result.counts()
    return csv_line(
        [neutralise(result.sample), neutralise(result.tile), result.status,
         neutralise(result.error), result.width, result.height,
         *(counts[c] for c in CELL_CLASSES), round(result.ms, 1), *_scale_cells(result.scale)]
    )  # fmt: skip


def _complete_lines(f: IO[str]) -> Iterator[str]:
    """Lines of the text file ``f`` that end in a newline (a torn last line is dropped)."""
    for line in f:
        if line.endswith("\n"):
            yield line


def raw_tile_rows(path: Path) -> Iterator[dict[str, str]]:
    """Complete ``tiles.csv`` rows of ``path`` as written (none if it does not exist),
    streamed; a row torn inside a quoted cell ends the file."""
    if not path.exists():
        return
    with open(path, encoding="utf-8", errors=NAME_ERRORS, newline="") as f:
        try:
            yield from csv.DictReader(_complete_lines(f))
        except csv.Error:
            return


class TileRow(NamedTuple):
    """A well-formed ``tiles.csv`` row, text cells restored; ``counts`` in
    :data:`~hemoscan.datamodel.CELL_CLASSES` order."""

    sample: str
    tile: str
    ok: bool
    counts: tuple[int, ...]


def parse_tile_row(row: dict[str, Any]) -> TileRow | None:
    """The row, or ``None`` when it is torn or malformed."""
    if None in row or any(not isinstance(row.get(c), str) for c in _REQUIRED_COLUMNS):
        return None
    if row["status"] not in ("ok", "error"):
        return None
    try:
        counts = tuple(int(row[c] or 0) for c in CELL_CLASSES)
    except ValueError:
        return None
    return TileRow(restore(row["sample"]), restore(row["tile"]), row["status"] == "ok", counts)


def current_cells(row: dict[str, str]) -> list[str]:
    """A read row's cells as this version writes them (older folders had raw text cells and
    no scale columns)."""
    cells = [row.get(c) or "" for c in TILE_COLUMNS]
    return [neutralise(restore(v)) if c in _TEXT_COLUMNS else v for c, v in zip(TILE_COLUMNS, cells)]


def _row_to_result(row: dict[str, str]) -> TileResult:
    scale = None
    if row.get("scale"):
        estimate = row.get("scale_estimate")
        scale = ScaleEstimate(
            float(row["scale"]), row.get("scale_source") or "", float(estimate) if estimate else None
        )
    return TileResult(
        sample=restore(row["sample"]),
        tile=restore(row["tile"]),
        status=row["status"],
        error=restore(row["error"]),
        width=int(row["width"] or 0),
        height=int(row["height"] or 0),
        ms=float(row["ms"] or 0),
        scale=scale,
    )


# ---- detections.jsonl lines ----


def detection_lines(result: TileResult) -> bytes:
    """The ``detections.jsonl`` lines of a finished tile, one per detection, in ordinal order."""
    return b"".join(
        _detection_line(result.sample, result.tile, i, d) for i, d in enumerate(result.detections)
    )


def _detection_line(sample: str, tile: str, ordinal: int, det: Detection) -> bytes:
    record = {"id": detection_id(sample, tile, ordinal), "sample": sample, "tile": tile,
              **det.to_dict()}  # fmt: skip
    # lone surrogates (non-UTF-8 file names) become \udcXX escapes, which json reads back
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace")


def parse_detection_line(line: bytes | str) -> tuple[str, str, Detection] | None:
    """``(sample, tile, detection)`` of one line of ``detections.jsonl``, or ``None``."""
    try:
        d = json.loads(line.decode("utf-8") if isinstance(line, bytes) else line)
        det = Detection.from_dict(d)
        sample, tile = d["sample"], d["tile"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not (isinstance(sample, str) and isinstance(tile, str)) or det.label not in CLASS_INDEX:
        return None
    return sample, tile, det


# ---- reading a folder ----


def iter_tiles(out_dir: Path) -> Iterator[TileResult]:
    """Every tile row of a scan folder (without detections), streamed."""
    return map(_row_to_result, raw_tile_rows(Path(out_dir) / TILES))


def read_tiles(out_dir: Path) -> list[TileResult]:
    """Every tile row of a scan folder (without detections)."""
    return list(iter_tiles(out_dir))


def _committed_lines(path: Path) -> Iterator[tuple[int, bytes, tuple[str, str, Detection]]]:
    """``(byte offset, line, parsed)`` of every complete line of ``detections.jsonl`` (see
    :func:`iter_detections`)."""
    offset = 0
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                return
            parsed = parse_detection_line(line)
            if parsed is None:
                raise OutputDirError(
                    f"{path}, line {number}: not a detection; re-run the scan command on this "
                    "folder to repair it (its tile is scanned again)"
                )
            yield offset, line, parsed
            offset += len(line)


def iter_detections(out_dir: Path) -> Iterator[tuple[str, str, Detection]]:
    """``(sample, tile, detection)`` for every line of ``detections.jsonl``, streamed.

    A last line without its newline is a write in progress (a scan running) and is not read;
    any other unreadable line raises :class:`~hemoscan.errors.OutputDirError` (re-running the
    scan command repairs the folder)."""
    for _, _, parsed in _committed_lines(Path(out_dir) / DETECTIONS):
        yield parsed


class TileBlock(NamedTuple):
    """One tile's lines of ``detections.jsonl`` (a tile's lines are always consecutive):
    where they lie (``offset`` and ``size`` in bytes, for :func:`read_tile_block`) and what
    they hold. ``detections[n]`` has ordinal ``n``, so its id is
    ``detection_id(sample, tile, n)``."""

    sample: str
    tile: str
    offset: int
    size: int
    detections: tuple[Detection, ...]


def iter_tile_blocks(out_dir: Path) -> Iterator[TileBlock]:
    """Every tile's block of ``detections.jsonl``, streamed, read like :func:`iter_detections`."""
    key: TileKey | None = None
    start = end = 0
    found: list[Detection] = []
    for offset, line, (sample, tile, det) in _committed_lines(Path(out_dir) / DETECTIONS):
        if (sample, tile) != key:
            if key is not None:
                yield TileBlock(*key, start, end - start, tuple(found))
            key, start, found = (sample, tile), offset, []
        found.append(det)
        end = offset + len(line)
    if key is not None:
        yield TileBlock(*key, start, end - start, tuple(found))


def read_tile_block(out_dir: Path, offset: int, size: int) -> list[Detection]:
    """The detections of the block at ``offset`` (see :class:`TileBlock`), in ordinal order."""
    with open(Path(out_dir) / DETECTIONS, "rb") as f:
        f.seek(offset)
        data = f.read(size)
    out = []
    for line in data.splitlines(keepends=True):
        parsed = parse_detection_line(line)
        if parsed is None:
            raise OutputDirError(f"{Path(out_dir) / DETECTIONS}: changed while being read")
        out.append(parsed[2])
    return out


def read_results(out_dir: Path) -> list[TileResult]:
    """Every tile of a scan folder with its detections (for exports and reports)."""
    by_key: dict[TileKey, list[Detection]] = {}
    for sample, tile, det in iter_detections(out_dir):
        by_key.setdefault((sample, tile), []).append(det)
    results = []
    for t in read_tiles(out_dir):
        dets = tuple(by_key.get((t.sample, t.tile), ()))
        results.append(
            TileResult(t.sample, t.tile, t.status, t.width, t.height, dets, t.error, t.ms, t.scale)
        )
    return results


def read_run(out_dir: Path) -> dict[str, Any]:
    """``run.json`` of a scan folder: ``settings``, ``started_at``, ``working_dir``, and
    ``slides`` (records of whole-slide images, see
    :meth:`~hemoscan.io.scan_store.ScanStore.record_slides`) if any."""
    return json.loads((Path(out_dir) / RUN).read_text())
