"""What there is to review in a scan folder: every hemophagocyte and macrophage suggestion.

A :class:`ReviewIndex` is built by one streaming pass over ``tiles.csv`` and
``detections.jsonl``. It keeps the suggestions of :data:`~hemoscan.datamodel.REVIEWED_CLASSES`
(a few hundred bytes each) and, per tile, where its lines lie in ``detections.jsonl``, so the
whole tile's cells are read only when a reviewer opens it. Only tiles whose ``tiles.csv`` row is
committed count: a folder being scanned is read as it stands (the scan's lock is not taken),
and :meth:`ReviewIndex.stale` says when the scan has written more.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hemoscan.datamodel import REVIEWED_CLASSES, Detection, detection_id
from hemoscan.errors import HemoscanError
from hemoscan.io.scan_files import (
    DETECTIONS,
    TILES,
    iter_tile_blocks,
    iter_tiles,
    read_run,
    read_tile_block,
)
from hemoscan.review.log import ReviewError


@dataclass(frozen=True)
class Suggestion:
    """One hemophagocyte or macrophage the model suggested: ``id`` (its line's ``id``),
    ``ordinal`` (its place among its tile's lines) and the model's ``detection``."""

    id: str
    sample: str
    tile: str
    ordinal: int
    detection: Detection


@dataclass(frozen=True)
class TileEntry:
    """A committed ok tile: its size and scale (``tiles.csv``) and its block of
    ``detections.jsonl`` (``offset``, ``size`` in bytes; ``size`` 0 when it has no cell)."""

    sample: str
    tile: str
    width: int
    height: int
    scale: float
    offset: int = 0
    size: int = 0


def _signature(scan_dir: Path) -> tuple[tuple[int, int], ...]:
    out = []
    for name in (TILES, DETECTIONS):
        try:
            st = os.stat(scan_dir / name)
            out.append((st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            out.append((-1, 0))
    return tuple(out)


class ReviewIndex:
    """The suggestions of a scan folder (see the module docstring), in ``detections.jsonl``
    order: ``suggestions``, ``by_id``, ``tiles`` (by ``(sample, tile)``) and ``samples`` (in
    ``tiles.csv`` order). Raises :class:`ReviewError` for a folder that is not a scan, or holds
    two detections with one id."""

    def __init__(self, scan_dir: str | Path) -> None:
        self.scan_dir = Path(scan_dir)
        if not (self.scan_dir / TILES).is_file():
            raise ReviewError(f"{self.scan_dir}: not a hemoscan scan folder (no {TILES})")
        self._signature = _signature(self.scan_dir)
        try:
            self.working_dir = Path(read_run(self.scan_dir).get("working_dir", "."))
        except (OSError, ValueError) as e:
            raise ReviewError(f"{self.scan_dir}: unreadable run.json ({e})") from None
        self.tiles: dict[tuple[str, str], TileEntry] = {}
        self.samples: list[str] = []
        for t in iter_tiles(self.scan_dir):
            if t.sample not in self.samples:
                self.samples.append(t.sample)
            if t.ok:
                scale = t.scale.scale if t.scale is not None else 1.0
                self.tiles[(t.sample, t.tile)] = TileEntry(t.sample, t.tile, t.width, t.height, scale)
        self.suggestions: list[Suggestion] = []
        self.by_id: dict[str, Suggestion] = {}
        if not (self.scan_dir / DETECTIONS).is_file():
            return
        try:
            for block in iter_tile_blocks(self.scan_dir):
                key = (block.sample, block.tile)
                entry = self.tiles.get(key)
                if entry is None:  # not committed yet (a scan is running): not reviewable yet
                    continue
                self.tiles[key] = TileEntry(*key, entry.width, entry.height, entry.scale,
                                            block.offset, block.size)  # fmt: skip
                for n, det in enumerate(block.detections):
                    if det.label in REVIEWED_CLASSES:
                        self._add(Suggestion(detection_id(*key, n), *key, n, det))
        except HemoscanError as e:
            raise ReviewError(str(e)) from None

    def _add(self, s: Suggestion) -> None:
        other = self.by_id.get(s.id)
        if other is not None:
            raise ReviewError(
                f"{self.scan_dir / DETECTIONS}: two detections share the id {s.id} "
                f"({other.tile}#{other.ordinal} and {s.tile}#{s.ordinal}); report this"
            )
        self.by_id[s.id] = s
        self.suggestions.append(s)

    def stale(self) -> bool:
        """Whether ``tiles.csv`` or ``detections.jsonl`` changed since the index was built."""
        return _signature(self.scan_dir) != self._signature

    def tile_detections(self, sample: str, tile: str) -> list[Detection]:
        """Every detection of a committed tile, in ordinal order (read from disk now)."""
        entry = self.tiles.get((sample, tile))
        if entry is None:
            raise ReviewError(f"no scanned tile {tile!r} in sample {sample!r}")
        if not entry.size:
            return []
        return read_tile_block(self.scan_dir, entry.offset, entry.size)

    def base_dirs(self) -> list[Path]:
        """Where relative tile paths are looked for: the scan's working folder, then here."""
        return [self.working_dir, Path.cwd()]
