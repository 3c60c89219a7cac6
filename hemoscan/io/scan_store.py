"""The files of a scan's output folder, written so that a killed run loses nothing finished.

Each finished tile's detections are appended to ``detections.jsonl`` at once; its
``tiles.csv`` row, which marks it done, follows once those detections are on disk: rows are
committed in groups of at most ``sync_tiles`` tiles and ``sync_seconds`` apart (a flush and an
fsync of each file per group, not per tile, which would cost more than the network on a fast
scan). A killed run or a power cut therefore loses at most the last group's rows, and those
tiles are scanned again.
Opening an existing folder compacts both files, streaming: a torn last line is dropped, and
detections of tiles without a ``tiles.csv`` row are removed, so re-running a tile never
duplicates a row. Memory does not grow with the number of rows: finished tiles are indexed by
a 16-byte digest of ``(sample, tile)`` in a sorted array. ``run.json`` records the settings that change counts (resuming with
different ones is refused), the start time, the working folder that relative tile paths
are relative to, and how each whole-slide image was scanned (``slides``).
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import time
from datetime import datetime, timezone
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from hemoscan.datamodel import CELL_CLASSES, Detection, ScaleEstimate, TileResult
from hemoscan.errors import OutputDirError
from hemoscan.io.files import atomic_write_json, atomic_writer

DETECTIONS = "detections.jsonl"
TILES = "tiles.csv"
SUMMARY = "summary.json"
RUN = "run.json"
#: Columns every tiles.csv has had; the scale columns came later and may be missing (empty).
_REQUIRED_COLUMNS = ("sample", "tile", "status", "error", "width", "height", *CELL_CLASSES, "ms")
SCALE_COLUMNS = ("scale", "scale_source", "scale_estimate")
TILE_COLUMNS = (*_REQUIRED_COLUMNS, *SCALE_COLUMNS)

TileKey = tuple[str, str]  # (sample, tile)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _complete_lines(f: IO[str]) -> Iterator[str]:
    """Lines of the text file ``f`` that end in a newline (a torn last line is dropped)."""
    for line in f:
        if line.endswith("\n"):
            yield line


def _tile_rows(path: Path) -> Iterator[dict[str, str]]:
    """Complete ``tiles.csv`` rows of ``path`` (none if it does not exist), streamed."""
    if not path.exists():
        return
    with open(path, encoding="utf-8", newline="") as f:
        yield from csv.DictReader(_complete_lines(f))


def _digest(sample: str, tile: str) -> bytes:
    return hashlib.blake2b(f"{sample}\0{tile}".encode(), digest_size=16).digest()


class FinishedIndex:
    """Which ``(sample, tile)`` keys a folder holds, and whether each is ok: sorted 16-byte
    blake2b digests (``S16`` numpy array) and flags, 17 bytes per tile."""

    def __init__(self, keys: dict[bytes, bool]) -> None:
        digests = np.array(list(keys), dtype="S16")
        order = np.argsort(digests, kind="stable")
        self._digests = digests[order]
        self._ok = np.fromiter(keys.values(), bool, len(keys))[order]

    def __len__(self) -> int:
        return len(self._digests)

    def get(self, sample: str, tile: str) -> bool | None:
        """``True`` / ``False`` (finished ok / failed), or ``None`` when not finished."""
        key = np.array(_digest(sample, tile), dtype="S16")
        i = int(np.searchsorted(self._digests, key))
        if i < len(self._digests) and self._digests[i] == key:
            return bool(self._ok[i])
        return None


def _scale_cells(scale: ScaleEstimate | None) -> list[Any]:
    if scale is None:
        return ["", "", ""]
    estimate = "" if scale.estimate is None else round(scale.estimate, 4)
    return [round(scale.scale, 4), scale.source, estimate]


def _row_to_result(row: dict[str, str]) -> TileResult:
    scale = None
    if row.get("scale"):
        estimate = row.get("scale_estimate")
        scale = ScaleEstimate(
            float(row["scale"]), row.get("scale_source") or "", float(estimate) if estimate else None
        )
    return TileResult(
        sample=row["sample"],
        tile=row["tile"],
        status=row["status"],
        error=row["error"],
        width=int(row["width"] or 0),
        height=int(row["height"] or 0),
        ms=float(row["ms"] or 0),
        scale=scale,
    )


class ScanStore:
    """Reader and appender of one output folder.

    ``finished`` indexes the tiles the folder held when opened (tiles appended since are not
    added: a scan never meets the same tile twice). ``tiles.csv`` rows are committed every
    ``sync_tiles`` tiles or ``sync_seconds`` seconds, whichever comes first (0: every tile).
    """

    def __init__(
        self,
        out_dir: Path,
        run_settings: dict[str, Any],
        retry_failed: bool = False,
        sync_seconds: float = 1.0,
        sync_tiles: int = 64,
    ):
        self.dir = Path(out_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self._check_run(run_settings)
        self.finished = self._compact(retry_failed)
        self.sync_seconds, self.sync_tiles = sync_seconds, sync_tiles
        self._pending_rows: list[list[Any]] = []
        self._last_sync = time.monotonic()
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

    def _compact(self, retry_failed: bool) -> FinishedIndex:
        """Rewrite ``tiles.csv`` without torn or repeated rows (and without failed ones when
        ``retry_failed``), then ``detections.jsonl`` to match; the index of what is kept."""
        path = self.dir / TILES
        kept: dict[bytes, bool] = {}
        if path.exists():
            with atomic_writer(path) as dst:
                writer = csv.writer(dst)
                writer.writerow(TILE_COLUMNS)
                for row in _tile_rows(path):
                    if None in row or any(row.get(c) is None for c in _REQUIRED_COLUMNS):
                        continue  # malformed (torn) row
                    if retry_failed and row["status"] != "ok":
                        continue
                    key = _digest(row["sample"], row["tile"])
                    if key not in kept:
                        kept[key] = row["status"] == "ok"
                        writer.writerow([row.get(c) or "" for c in TILE_COLUMNS])
        index = FinishedIndex(kept)
        del kept
        if (self.dir / DETECTIONS).exists():
            self._compact_detections(index)
        return index

    def _compact_detections(self, index: FinishedIndex) -> None:
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
                if index.get(str(d.get("sample")), str(d.get("tile"))):
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
        return self.finished.get(sample, tile) is not None

    def append(self, result: TileResult) -> None:
        """Record one finished tile: its detections now, its row (which marks it done) with
        the next commit (see :meth:`sync`)."""
        for det in result.detections:
            record = {"sample": result.sample, "tile": result.tile, **det.to_dict()}
            self._det_file.write(json.dumps(record, ensure_ascii=False) + "\n")
        counts = result.counts()
        self._pending_rows.append(
            [result.sample, result.tile, result.status, result.error, result.width,
             result.height, *(counts[c] for c in CELL_CLASSES), round(result.ms, 1),
             *_scale_cells(result.scale)]
        )  # fmt: skip
        if (
            len(self._pending_rows) >= self.sync_tiles
            or time.monotonic() - self._last_sync >= self.sync_seconds
        ):
            self.sync()

    def sync(self) -> None:
        """Commit: detections to disk first, then the rows of their tiles."""
        self._det_file.flush()
        os.fsync(self._det_file.fileno())
        if self._pending_rows:
            self._tiles_writer.writerows(self._pending_rows)
            self._pending_rows.clear()
        self._tiles_file.flush()
        os.fsync(self._tiles_file.fileno())
        self._last_sync = time.monotonic()

    def close(self) -> None:
        self.sync()
        self._det_file.close()
        self._tiles_file.close()

    def __enter__(self) -> ScanStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_tiles(out_dir: Path) -> Iterator[TileResult]:
    """Every tile row of a scan folder (without detections), streamed."""
    return map(_row_to_result, _tile_rows(Path(out_dir) / TILES))


def read_tiles(out_dir: Path) -> list[TileResult]:
    """Every tile row of a scan folder (without detections)."""
    return list(iter_tiles(out_dir))


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
            TileResult(t.sample, t.tile, t.status, t.width, t.height, dets, t.error, t.ms, t.scale)
        )
    return results


def read_run(out_dir: Path) -> dict[str, Any]:
    """``run.json`` of a scan folder: ``settings``, ``started_at``, ``working_dir``, and
    ``slides`` (records of whole-slide images, see :meth:`ScanStore.record_slides`) if any."""
    return json.loads((Path(out_dir) / RUN).read_text())
