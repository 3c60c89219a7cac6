"""ScanStore: group commits, the index of finished tiles, verification and repair on opening,
one writer per folder, spreadsheet-safe rows."""

from __future__ import annotations

import csv
import os
import socket
from pathlib import Path

import pytest

from hemoscan.datamodel import Detection, TileResult
from hemoscan.errors import OutputDirError
from hemoscan.io.scan_files import DETECTIONS, TILES, iter_detections, iter_tiles
from hemoscan.io.scan_store import FinishedIndex, ScanStore


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


def test_a_scan_made_with_another_model_says_which_to_resume_with(tmp_path: Path) -> None:
    ScanStore(tmp_path, {"model_name": "old-default", "tile_size": 1024}).close()
    with pytest.raises(OutputDirError, match="scanned with the model 'old-default': pass --model"):
        ScanStore(tmp_path, {"model_name": "new-default", "tile_size": 1024})
    with pytest.raises(OutputDirError, match=r"other settings \(tile_size: 1024 -> 512\)\. Resume"):
        ScanStore(tmp_path, {"model_name": "old-default", "tile_size": 512})


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


def _finished_folder(out: Path, n: int = 4) -> None:
    with ScanStore(out, {"k": 1}) as store:
        for i in range(n):
            store.append(_result(i))
        store.append(_result(n, "error"))


def test_a_committed_tile_without_all_its_detections_is_scanned_again(tmp_path: Path) -> None:
    _finished_folder(tmp_path)
    lines = (tmp_path / DETECTIONS).read_text().splitlines(keepends=True)
    # the loss the old write order allowed: tile_1's row committed, its detection line not
    (tmp_path / DETECTIONS).write_text("".join(line for line in lines if "tile_1.png" not in line))
    with ScanStore(tmp_path, {"k": 1}) as again:
        assert again.rescanned == 1 and not again.is_finished("S", "tile_1.png")
        assert again.is_finished("S", "tile_0.png") and again.is_finished("S", "tile_4.png")
    assert [t.tile for t in iter_tiles(tmp_path)] == ["tile_0.png", "tile_2.png", "tile_3.png", "tile_4.png"]


@pytest.mark.parametrize("tail", [b'{"sample": "S", "tile": "tile_3.png", "lab', b"\x00\xff garbage\n"])
def test_a_torn_or_garbage_last_line_is_repaired(tmp_path: Path, tail: bytes) -> None:
    _finished_folder(tmp_path)
    with open(tmp_path / DETECTIONS, "r+b") as f:  # tile_3's only line replaced by the tail
        text = f.read()
        f.seek(text.rindex(b"\n", 0, text.index(b'"sample": "S", "tile": "tile_3.png"')) + 1)
        f.truncate()
        f.write(tail)
    with ScanStore(tmp_path, {"k": 1}) as again:
        assert again.rescanned == 1 and not again.is_finished("S", "tile_3.png")
        again.append(_result(3))
    assert len(list(iter_detections(tmp_path))) == 4
    assert sorted(t.tile for t in iter_tiles(tmp_path)) == [f"tile_{i}.png" for i in range(5)]


def test_a_sound_folder_is_not_rewritten(tmp_path: Path) -> None:
    _finished_folder(tmp_path)
    (tmp_path / DETECTIONS).write_bytes((tmp_path / DETECTIONS).read_bytes() + b"not json\n")
    ScanStore(tmp_path, {"k": 1}).close()  # repaired: the stray line goes
    inodes = {n: (tmp_path / n).stat().st_ino for n in (DETECTIONS, TILES)}
    with ScanStore(tmp_path, {"k": 1}) as again:
        assert again.rescanned == 0 and len(again.finished) == 5
    assert inodes == {n: (tmp_path / n).stat().st_ino for n in (DETECTIONS, TILES)}


def test_spreadsheet_formulas_are_neutralised_and_read_back(tmp_path: Path) -> None:
    hostile = TileResult('=HYPERLINK("http://x","y")', "+cmd|' /C calc'!A0.png", "error", 0, 0, (),
                         error="@SUM(1+1)")  # fmt: skip
    odd = TileResult("'quoted", "-1.png", "ok", 8, 8, (Detection("rbc", 0.9, 1, 1, 2, 2),))
    with ScanStore(tmp_path, {"k": 1}) as store:
        store.append(hostile)
        store.append(odd)
    rows = _rows(tmp_path)
    assert [r["sample"] for r in rows] == ['\'=HYPERLINK("http://x","y")', "''quoted"]
    assert rows[0]["tile"].startswith("'+") and rows[0]["error"] == "'@SUM(1+1)"
    assert rows[1]["tile"] == "'-1.png"
    assert [(t.sample, t.tile, t.error) for t in iter_tiles(tmp_path)] == [
        (hostile.sample, hostile.tile, hostile.error), (odd.sample, odd.tile, "")]  # fmt: skip
    with ScanStore(tmp_path, {"k": 1}) as again:  # resuming maps the rows to the same tiles
        assert again.rescanned == 0
        assert again.is_finished(hostile.sample, hostile.tile)
        assert again.is_finished(odd.sample, odd.tile)


def test_file_names_that_are_not_utf8_round_trip(tmp_path: Path) -> None:
    name = b"caf\xe9 \xff.png".decode("utf-8", "surrogateescape")
    tile = TileResult("S", name, "ok", 8, 8, (Detection("rbc", 0.9, 1, 1, 2, 2),))
    with ScanStore(tmp_path, {"k": 1}) as store:
        store.append(tile)
    assert [(s, t) for s, t, _ in iter_detections(tmp_path)] == [("S", name)]
    with ScanStore(tmp_path, {"k": 1}) as again:
        assert again.rescanned == 0 and again.is_finished("S", name)


def test_one_writer_per_folder(tmp_path: Path) -> None:
    store = ScanStore(tmp_path, {"k": 1})
    with pytest.raises(OutputDirError) as info:
        ScanStore(tmp_path, {"k": 1})
    message = str(info.value)
    assert str(tmp_path) in message and "another hemoscan scan is writing" in message
    assert f"PID {os.getpid()} on host '{socket.gethostname()}'" in message
    store.close()
    ScanStore(tmp_path, {"k": 1}).close()


def test_a_folder_written_by_an_older_version_is_brought_up_to_date(tmp_path: Path) -> None:
    """No scale columns and raw text cells: rewritten in the current layout, nothing rescanned."""
    ScanStore(tmp_path, {"k": 1}).close()
    old = ("sample,tile,status,error,width,height,rbc,platelet,nucleated,macrophage,hemophagocyte,ms\r\n"
           "=cmd,a.png,ok,,8,8,1,0,0,0,0,1.0\r\n")  # fmt: skip
    (tmp_path / TILES).write_text(old)
    (tmp_path / DETECTIONS).write_text(
        '{"sample": "=cmd", "tile": "a.png", "x1": 1, "y1": 1, "x2": 2, "y2": 2, "label": "rbc", '
        '"score": 0.9}\n'
    )
    with ScanStore(tmp_path, {"k": 1}) as again:
        assert again.rescanned == 0 and again.is_finished("=cmd", "a.png")
    header, row = (tmp_path / TILES).read_text().splitlines()
    assert header.split(",")[-3:] == ["scale", "scale_source", "scale_estimate"]
    assert row.startswith("'=cmd,a.png,ok,") and [t.sample for t in iter_tiles(tmp_path)] == ["=cmd"]
