"""The files of a scan's output folder, written so that a killed run loses nothing finished.

``detections.jsonl`` and ``tiles.csv`` are appended and flushed as each tile finishes (its
detections first, then its ``tiles.csv`` row, which marks it done). Opening an existing
folder compacts both: a torn last line is dropped, and detections of tiles without a
``tiles.csv`` row (in flight when a run was killed) are removed, so re-running the tile
never duplicates a row. ``run.json`` records the settings that change counts (resuming with
different ones is refused), the start time, the working folder that relative tile paths
are relative to, and how each whole-slide image was scanned (``slides``).
"""

from __future__ import annotations

import csv
import io
import json
import os
from datetime import datetime, timezone
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hemoscan.datamodel import CELL_CLASSES, Detection, TileResult
from hemoscan.errors import OutputDirError
from hemoscan.io.files import atomic_write_json, atomic_write_text, atomic_writer

DETECTIONS = "detections.jsonl"
TILES = "tiles.csv"
SUMMARY = "summary.json"
RUN = "run.json"
TILE_COLUMNS = ("sample", "tile", "status", "error", "width", "height", *CELL_CLASSES, "ms")

TileKey = tuple[str, str]  # (sample, tile)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _complete_lines(path: Path) -> list[str]:
    """Lines of ``path`` that end in a newline (a torn last line is dropped)."""
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    return lines[:-1]  # the part after the last newline is empty or torn


def _row_to_result(row: dict[str, str]) -> TileResult:
    return TileResult(
        sample=row["sample"],
        tile=row["tile"],
        status=row["status"],
        error=row["error"],
        width=int(row["width"] or 0),
        height=int(row["height"] or 0),
        ms=float(row["ms"] or 0),
    )


class ScanStore:
    """Reader and appender of one output folder."""

    def __init__(self, out_dir: Path, run_settings: dict[str, Any], retry_failed: bool = False):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._check_run(run_settings)
        # finished tile -> whether it is ok; only that, so memory stays small per tile
        self.finished: dict[TileKey, bool] = {}
        self._compact(retry_failed)
        self._det_file = open(self.dir / DETECTIONS, "a", encoding="utf-8")
        self._tiles_file = open(self.dir / TILES, "a", encoding="utf-8", newline="")
        self._tiles_writer = csv.writer(self._tiles_file)
        if self._tiles_file.tell() == 0:
            self._tiles_writer.writerow(TILE_COLUMNS)
            self._tiles_file.flush()

    def _check_run(self, settings: dict[str, Any]) -> None:
        path = self.dir / RUN
        if path.exists():
            run = json.loads(path.read_text())
            previous = run["settings"]
            changed = sorted(k for k in settings if previous.get(k) != settings[k])
            if changed:
                details = "; ".join(f"{k}: {previous.get(k)!r} -> {settings[k]!r}" for k in changed)
                raise OutputDirError(
                    f"{self.dir}: holds a scan made with other settings ({details}). "
                    "Resume with the same settings, or write to a new --out folder."
                )
            self.started_at: str = run["started_at"]
        else:
            if (self.dir / TILES).exists() or (self.dir / DETECTIONS).exists():
                raise OutputDirError(
                    f"{self.dir}: holds scan files without {RUN}; use a new folder"
                )
            self.started_at = utc_now()
            run = {"settings": settings, "started_at": self.started_at, "working_dir": os.getcwd()}
            atomic_write_json(path, run, indent=2)

    def _compact(self, retry_failed: bool) -> None:
        tiles_lines = _complete_lines(self.dir / TILES)
        rows = (
            list(csv.DictReader(io.StringIO("\n".join(tiles_lines) + "\n"))) if tiles_lines else []
        )
        kept_rows = []
        for row in rows:
            if None in row or any(row.get(c) is None for c in TILE_COLUMNS):
                continue  # malformed (torn) row
            if retry_failed and row["status"] != "ok":
                continue
            key = (row["sample"], row["tile"])
            if key not in self.finished:
                self.finished[key] = row["status"] == "ok"
                kept_rows.append(row)
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(TILE_COLUMNS)
        for row in kept_rows:
            writer.writerow([row[c] for c in TILE_COLUMNS])
        if rows or (self.dir / TILES).exists():
            atomic_write_text(self.dir / TILES, out.getvalue())
        if (self.dir / DETECTIONS).exists():
            self._compact_detections()

    def _compact_detections(self) -> None:
        """Keep the complete lines of finished ok tiles, streaming (the file can be large)."""
        path = self.dir / DETECTIONS
        with open(path, encoding="utf-8") as src, atomic_writer(path) as dst:
            for line in src:
                if not line.endswith("\n"):
                    break  # torn last line
                try:
                    d = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if self.finished.get((d.get("sample"), d.get("tile"))):
                    dst.write(line)

    def record_slides(self, slides: list[dict[str, Any]]) -> None:
        """Record in ``run.json`` (key ``slides``) how each whole-slide image is scanned: one
        record per ``(sample, slide)``, a newer one replacing an older one."""
        if not slides:
            return
        path = self.dir / RUN
        run = json.loads(path.read_text())
        records = {(r["sample"], r["slide"]): r for r in run.get("slides", [])}
        records.update({(r["sample"], r["slide"]): r for r in slides})
        run["slides"] = list(records.values())
        atomic_write_json(path, run, indent=2)

    def is_finished(self, sample: str, tile: str) -> bool:
        return (sample, tile) in self.finished

    def append(self, result: TileResult) -> None:
        """Record one finished tile: its detections, then its row (which marks it done)."""
        for det in result.detections:
            record = {"sample": result.sample, "tile": result.tile, **det.to_dict()}
            self._det_file.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._det_file.flush()
        os.fsync(self._det_file.fileno())
        counts = result.counts()
        self._tiles_writer.writerow(
            [result.sample, result.tile, result.status, result.error, result.width,
             result.height, *(counts[c] for c in CELL_CLASSES), round(result.ms, 1)]
        )  # fmt: skip
        self._tiles_file.flush()
        os.fsync(self._tiles_file.fileno())
        self.finished[(result.sample, result.tile)] = result.ok

    def close(self) -> None:
        self._det_file.close()
        self._tiles_file.close()

    def __enter__(self) -> ScanStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_tiles(out_dir: Path) -> list[TileResult]:
    """Every tile row of a scan folder (without detections)."""
    lines = _complete_lines(Path(out_dir) / TILES)
    return [_row_to_result(r) for r in csv.DictReader(io.StringIO("\n".join(lines) + "\n"))]


def iter_detections(out_dir: Path) -> Iterator[tuple[str, str, Detection]]:
    """``(sample, tile, detection)`` for every line of ``detections.jsonl``, streamed."""
    with open(Path(out_dir) / DETECTIONS, encoding="utf-8") as f:
        for line in f:
            d = json.loads(line)
            yield d["sample"], d["tile"], Detection.from_dict(d)


def read_results(out_dir: Path) -> list[TileResult]:
    """Every tile of a scan folder with its detections (for exports and reports)."""
    by_key: dict[TileKey, list[Detection]] = {}
    for sample, tile, det in iter_detections(out_dir):
        by_key.setdefault((sample, tile), []).append(det)
    results = []
    for t in read_tiles(out_dir):
        dets = tuple(by_key.get((t.sample, t.tile), ()))
        results.append(
            TileResult(t.sample, t.tile, t.status, t.width, t.height, dets, t.error, t.ms)
        )
    return results


def read_run(out_dir: Path) -> dict[str, Any]:
    """``run.json`` of a scan folder: ``settings``, ``started_at``, ``working_dir``, and
    ``slides`` (records of whole-slide images, see :meth:`ScanStore.record_slides`) if any."""
    return json.loads((Path(out_dir) / RUN).read_text())
