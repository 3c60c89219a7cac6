"""scan_files: the rows and lines of a scan folder round-trip, and the readers stream what is
committed (a tile's detections as one block, a write in progress skipped, garbage refused)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import hemoscan.io.scan_files as scan_files
from hemoscan.datamodel import Detection, ScaleEstimate, TileResult, detection_id
from hemoscan.errors import OutputDirError
from hemoscan.io.scan_files import (
    DETECTIONS,
    TILES,
    TILES_HEADER,
    detection_lines,
    iter_detections,
    iter_tile_blocks,
    read_results,
    read_tile_block,
    tile_row_line,
)


def _tile(i: int, n: int = 2) -> TileResult:
    dets = tuple(Detection("rbc", 0.9, j, j, j + 10, j + 10) for j in range(n))
    return TileResult("S", f"tile_{i}.png", "ok", 64, 64, dets, ms=12.34,
                      scale=ScaleEstimate(1.25, "cells", 1.3))  # fmt: skip


def _write_folder(out: Path, tiles: list[TileResult]) -> None:
    (out / TILES).write_bytes(TILES_HEADER + b"".join(tile_row_line(t) for t in tiles))
    (out / DETECTIONS).write_bytes(b"".join(detection_lines(t) for t in tiles))


def test_rows_and_lines_read_back_as_written(tmp_path: Path) -> None:
    tiles = [_tile(0), _tile(1, n=0), _tile(2, n=3)]
    _write_folder(tmp_path, tiles)
    back = read_results(tmp_path)
    assert [(t.tile, t.detections, t.scale, t.ms) for t in back] == [
        (t.tile, t.detections, t.scale, 12.3) for t in tiles
    ]


def test_tile_blocks_locate_each_tiles_lines(tmp_path: Path) -> None:
    _write_folder(tmp_path, [_tile(0), _tile(1, n=0), _tile(2, n=3)])
    blocks = list(iter_tile_blocks(tmp_path))
    assert [(b.tile, len(b.detections)) for b in blocks] == [("tile_0.png", 2), ("tile_2.png", 3)]
    for block in blocks:
        assert read_tile_block(tmp_path, block.offset, block.size) == list(block.detections)
    first_line = (tmp_path / DETECTIONS).read_text().splitlines()[0]
    assert f'"id": "{detection_id("S", "tile_0.png", 0)}"' in first_line


def test_readers_skip_a_write_in_progress_and_refuse_garbage(tmp_path: Path) -> None:
    _write_folder(tmp_path, [_tile(i, n=1) for i in range(4)])
    with open(tmp_path / DETECTIONS, "ab") as f:
        f.write(b'{"sample": "S", "tile": "tile_9.png", "label": "rb')  # being appended
    assert len(list(iter_detections(tmp_path))) == 4
    with open(tmp_path / DETECTIONS, "ab") as f:
        f.write(b"\n")
    with pytest.raises(OutputDirError, match=r"detections.jsonl, line 5: not a detection; re-run"):
        list(iter_detections(tmp_path))


def test_the_read_side_does_not_import_the_writer() -> None:
    tree = ast.parse(Path(scan_files.__file__).read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert "hemoscan.io.scan_store" not in imported
