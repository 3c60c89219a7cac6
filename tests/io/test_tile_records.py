"""The per-tile side files: appended as tiles finish, compacted on resume, best near misses kept."""

from __future__ import annotations

import json
from pathlib import Path

from hemoscan.datamodel import Detection, TileQC, TileResult
from hemoscan.io.tile_records import (
    NEAR_MISSES_FILE,
    NEAR_MISSES_PER_SAMPLE,
    QC_FILE,
    TileRecords,
    iter_near_misses,
    iter_tile_qc,
)


def _result(sample: str, tile: str, *scores: float) -> TileResult:
    near = tuple(Detection("hemophagocyte", s, 0, 0, 10, 10) for s in scores)
    qc = TileQC({"sharpness": 5.0, "stain_density": 0.3})
    return TileResult(sample, tile, "ok", 10, 10, qc=qc, near_misses=near)


def test_lines_of_unfinished_tiles_are_dropped_on_reopening(tmp_path: Path) -> None:
    with TileRecords(tmp_path, lambda s, t: False, lambda m: ()) as records:
        records.append(_result("A", "done.png", 0.2))
        records.append(_result("A", "killed.png", 0.25))
    finished = {("A", "done.png")}
    with TileRecords(tmp_path, lambda s, t: (s, t) in finished, lambda m: ("flag",)) as records:
        records.append(_result("A", "again.png", 0.1))
    assert [(s, t) for s, t, _ in iter_tile_qc(tmp_path)] == [("A", "done.png"), ("A", "again.png")]
    assert [d.score for _, _, d in iter_near_misses(tmp_path)] == [0.2, 0.1]
    flags = [json.loads(line)["flags"] for line in (tmp_path / QC_FILE).read_text().splitlines()]
    assert flags == [[], ["flag"]]  # judged under the thresholds of the run that measured them


def test_the_best_near_misses_per_sample_are_kept_in_order(tmp_path: Path) -> None:
    with TileRecords(tmp_path, lambda s, t: True, lambda m: ()) as records:
        for i in range(NEAR_MISSES_PER_SAMPLE + 5):
            records.append(_result("A", f"a{i}.png", 0.01 * i))
        records.append(_result("B", "b.png", 0.001))
    kept = [(s, t, round(d.score, 3)) for s, t, d in iter_near_misses(tmp_path)]
    assert kept[:-1] == [("A", f"a{i}.png", round(0.01 * i, 3)) for i in range(5, NEAR_MISSES_PER_SAMPLE + 5)]
    assert kept[-1] == ("B", "b.png", 0.001)


def test_a_torn_last_line_is_ignored(tmp_path: Path) -> None:
    (tmp_path / NEAR_MISSES_FILE).write_text('{"sample": "A", "tile": "x", "label": "hemoph')
    assert list(iter_near_misses(tmp_path)) == [] and list(iter_tile_qc(tmp_path)) == []
