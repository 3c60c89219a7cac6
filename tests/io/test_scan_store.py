"""ScanStore: group commits of tiles.csv rows, and the index of finished tiles."""

from __future__ import annotations

import csv
from pathlib import Path

from hemoscan.datamodel import Detection, TileResult
from hemoscan.io.scan_store import DETECTIONS, TILES, FinishedIndex, ScanStore, iter_tiles


def _result(i: int, status: str = "ok") -> TileResult:
    dets = (Detection("rbc", 0.9, i, i, i + 10, i + 10),) if status == "ok" else ()
    return TileResult("S", f"tile_{i}.png", status, 64, 64, dets, error="" if status == "ok" else "bad")


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / TILES, newline="") as f:
        return list(csv.DictReader(f))


def test_rows_are_committed_after_their_detections(tmp_path: Path) -> None:
    store = ScanStore(tmp_path, {"k": 1}, sync_seconds=3600)
    for i in range(3):
        store.append(_result(i))
    assert _rows(tmp_path) == []  # not committed yet: a kill now rescans these tiles
    store.sync()
    assert [r["tile"] for r in _rows(tmp_path)] == ["tile_0.png", "tile_1.png", "tile_2.png"]
    store.append(_result(3))
    store.close()
    assert len(_rows(tmp_path)) == 4 and len((tmp_path / DETECTIONS).read_text().splitlines()) == 4


def test_uncommitted_tiles_are_dropped_on_reopening(tmp_path: Path) -> None:
    store = ScanStore(tmp_path, {"k": 1}, sync_seconds=3600)
    store.append(_result(0))
    store.append(_result(1, "error"))
    store.sync()
    store.append(_result(2))
    # the run is "killed" after writing tile 2's detections, before committing its row
    with open(tmp_path / DETECTIONS, "ab") as f:
        f.write(b"".join(store._pending_lines))
    store._release()  # what the process's death does: files closed, lock gone
    again = ScanStore(tmp_path, {"k": 1})
    assert again.is_finished("S", "tile_0.png") and again.is_finished("S", "tile_1.png")
    assert not again.is_finished("S", "tile_2.png")
    assert [line.count("tile_2") for line in (tmp_path / DETECTIONS).read_text().splitlines()] == [0]
    again.close()
    assert [t.tile for t in iter_tiles(tmp_path)] == ["tile_0.png", "tile_1.png"]


def test_finished_index_tells_ok_from_failed_from_unknown() -> None:
    index = FinishedIndex.from_keys({})
    assert len(index) == 0 and index.get("S", "a") is None
    from hemoscan.io.scan_store import _digest

    keys = {_digest("S", f"t{i}"): i % 2 == 0 for i in range(100)}
    index = FinishedIndex.from_keys(keys)
    assert len(index) == 100
    assert [index.get("S", f"t{i}") for i in range(4)] == [True, False, True, False]
    assert index.get("S", "t100") is None and index.get("T", "t0") is None
