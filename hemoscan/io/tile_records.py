"""Per-tile side files of a scan folder, beside ``detections.jsonl`` and ``tiles.csv``.

* ``qc.jsonl``: one line per ok tile, ``{"sample", "tile", "metrics": {...}, "flags": [...]}``:
  the tile's image-quality measurements and the flags they raised under the scan's
  thresholds (see :mod:`hemoscan.qc`).
* ``near_misses.jsonl``: the best hemophagocyte calls that scored *below* the threshold,
  ``{"sample", "tile", <detection fields as in detections.jsonl>}``, at most
  :data:`NEAR_MISSES_PER_SAMPLE` per sample after a scan. They are evidence for a reviewer,
  never counted; ``detections.jsonl`` keeps its meaning (every line a call).

Lines are appended as tiles finish, just before the tile is handed to the scan store.
Opening a folder keeps only the lines of tiles the store holds as finished (a tile killed
before its ``tiles.csv`` row was committed is scanned again and written again), so a
resumed scan never repeats a line. Both files are small and rewritten atomically.
"""

from __future__ import annotations

import heapq
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from hemoscan.datamodel import Detection, TileQC, TileResult
from hemoscan.io.files import atomic_writer

QC_FILE = "qc.jsonl"
NEAR_MISSES_FILE = "near_misses.jsonl"
#: Near misses kept per sample once a scan ends, best first.
NEAR_MISSES_PER_SAMPLE = 12


def _lines(path: Path) -> Iterator[dict[str, Any]]:
    """Complete, readable JSON lines of ``path`` (none if it does not exist)."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.endswith("\n"):
                break  # torn last line of a killed run
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


def _rewrite(path: Path, records: Iterator[dict[str, Any]]) -> None:
    with atomic_writer(path) as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


class TileRecords:
    """Appender of ``qc.jsonl`` and ``near_misses.jsonl``; ``is_finished(sample, tile)`` says
    which tiles the folder already holds (:meth:`hemoscan.io.scan_store.ScanStore.is_finished`).
    ``flags`` judges a tile's metrics under the scan's thresholds."""

    def __init__(
        self,
        out_dir: Path,
        is_finished: Callable[[str, str], bool],
        flags: Callable[[dict[str, float | None]], tuple[str, ...]],
    ) -> None:
        self.dir = Path(out_dir)
        self._flags = flags
        self._files: dict[str, IO[str]] = {}
        for name in (QC_FILE, NEAR_MISSES_FILE):
            path = self.dir / name
            if path.exists():
                _rewrite(path, (r for r in _lines(path)
                                if is_finished(str(r.get("sample")), str(r.get("tile")))))  # fmt: skip
            self._files[name] = open(path, "a", encoding="utf-8")

    def append(self, result: TileResult) -> None:
        head = {"sample": result.sample, "tile": result.tile}
        if result.qc is not None:
            flags = list(self._flags(result.qc.metrics))
            record = {**head, "metrics": result.qc.metrics, "flags": flags}
            self._files[QC_FILE].write(json.dumps(record, ensure_ascii=False) + "\n")
        for det in result.near_misses:
            record = {**head, **det.to_dict()}
            self._files[NEAR_MISSES_FILE].write(json.dumps(record, ensure_ascii=False) + "\n")
        for f in self._files.values():
            f.flush()

    def close(self) -> None:
        """Flush to disk, then keep the best :data:`NEAR_MISSES_PER_SAMPLE` near misses of
        each sample."""
        for f in self._files.values():
            f.flush()
            os.fsync(f.fileno())
            f.close()
        path = self.dir / NEAR_MISSES_FILE
        best: dict[str, list[tuple[float, int, dict[str, Any]]]] = {}
        for i, record in enumerate(_lines(path)):
            heap = best.setdefault(str(record.get("sample")), [])
            entry = (float(record.get("score", 0.0)), -i, record)
            if len(heap) < NEAR_MISSES_PER_SAMPLE:
                heapq.heappush(heap, entry)
            else:
                heapq.heappushpop(heap, entry)
        kept = sorted((e for heap in best.values() for e in heap), key=lambda e: -e[1])
        _rewrite(path, (record for _, _, record in kept))

    def __enter__(self) -> TileRecords:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def iter_tile_qc(out_dir: Path) -> Iterator[tuple[str, str, TileQC]]:
    """``(sample, tile, TileQC)`` for every line of ``qc.jsonl`` (none for older scans)."""
    for r in _lines(Path(out_dir) / QC_FILE):
        yield r["sample"], r["tile"], TileQC.from_dict(r)


def iter_near_misses(out_dir: Path) -> Iterator[tuple[str, str, Detection]]:
    """``(sample, tile, near-miss detection)`` for every line of ``near_misses.jsonl``."""
    for r in _lines(Path(out_dir) / NEAR_MISSES_FILE):
        yield r["sample"], r["tile"], Detection.from_dict(r)
