"""The shipped default model on the example tiles, against counts recorded once.

The record (``default_model_example_tiles.json``) names the weights' sha256 it was made with. A
new default model fails this test until its counts are recorded again, deliberately:

    python tests/golden/test_default_model.py --record

then read the diff of the JSON file before committing it. Tolerances allow the few borderline
detections that another CPU's floating-point rounding may move across a threshold, nothing more.
"""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from typer.testing import CliRunner

from hemoscan.cli.app import app
from hemoscan.datamodel import CELL_CLASSES
from hemoscan.models.loading import DEFAULT_MODEL, read_manifest

RECORD = Path(__file__).with_name("default_model_example_tiles.json")
N_TILES, SEED = 6, 0


def _count_tolerance(expected: int) -> int:
    return max(1, round(0.1 * expected))


def scan_example_tiles(work: Path) -> dict[str, object]:
    """Scan ``hemoscan example-tiles`` output with the default model; per-tile counts and scale."""
    runner = CliRunner()
    tiles, out = work / "tiles", work / "out"
    assert runner.invoke(app, ["example-tiles", str(tiles), "--n-tiles", str(N_TILES),
                               "--seed", str(SEED)]).exit_code == 0  # fmt: skip
    result = runner.invoke(app, ["scan", str(tiles), "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    with open(out / "tiles.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    summary = json.loads((out / "summary.json").read_text())
    return {
        "model": DEFAULT_MODEL,
        "weights_sha256": read_manifest()[DEFAULT_MODEL]["sha256"],
        "tiles": {
            Path(r["tile"]).relative_to(tiles).as_posix(): {
                "counts": {c: int(r[c]) for c in CELL_CLASSES},
                "scale": float(r["scale"]),
                "scale_source": r["scale_source"],
            }
            for r in rows
        },
        "hemophagocytes_by_engulfed": {
            s["sample"]: s["hemophagocytes_by_engulfed"] for s in summary["samples"]
        },
    }


def test_the_default_model_counts_the_example_tiles_as_recorded(tmp_path: Path) -> None:
    record = json.loads(RECORD.read_text())
    assert record["model"] == DEFAULT_MODEL and record["weights_sha256"] == read_manifest()[
        DEFAULT_MODEL
    ]["sha256"], "the default model changed: record its counts again (see this module's docstring)"
    now = scan_example_tiles(tmp_path)
    assert set(now["tiles"]) == set(record["tiles"])
    for tile, expected in record["tiles"].items():
        got = now["tiles"][tile]
        assert got["scale_source"] == expected["scale_source"], tile
        assert abs(got["scale"] - expected["scale"]) <= 0.02 * expected["scale"], tile
        for cls, n in expected["counts"].items():
            assert abs(got["counts"][cls] - n) <= _count_tolerance(n), (tile, cls, got, n)
    for sample, by_type in record["hemophagocytes_by_engulfed"].items():
        got = now["hemophagocytes_by_engulfed"][sample]
        for kind, n in by_type.items():
            assert abs(got.get(kind, 0) - n) <= 1, (sample, kind, got, by_type)


if __name__ == "__main__" and sys.argv[1:] == ["--record"]:
    import tempfile

    with tempfile.TemporaryDirectory() as work:
        RECORD.write_text(json.dumps(scan_example_tiles(Path(work)), indent=2) + "\n")
    print(f"recorded -> {RECORD}")
