"""``hemoscan scan`` and friends through Typer's CliRunner."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from hemoscan.cli.app import EXIT_TILES_FAILED, EXIT_USAGE, app
from tests.conftest import disc_image, write_image

runner = CliRunner()


def _scan(*args: str):
    return runner.invoke(app, ["scan", *args])


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "tiles.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_scan_writes_outputs_exports_and_evidence(
    tiny_model_dir: Path, tile_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = _scan(str(tile_folder), "--out", str(out), "--model", str(tiny_model_dir), "--batch-size", "4",
                   "--workers", "3", "--save-overlays", "--save-crops", "--export", "geojson", "--export", "coco")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "6 tiles scanned (0 already done) " in result.output and "2 sample(s)" in result.output
    assert len(list((out / "overlays").glob("*.jpg"))) == 6
    assert len(list((out / "geojson").glob("*.geojson"))) == 6
    coco = json.loads((out / "coco_detections.json").read_text())
    assert len(coco) == 24 and {c["category_id"] for c in coco} == {3}
    assert not (out / "crops").exists()  # the tiny model finds no macrophages or hemophagocytes


def test_sample_id_and_tiling_options(tiny_model_dir: Path, tmp_path: Path) -> None:
    image, centres = disc_image(700, 500, 20, seed=4)
    tile = write_image(tmp_path / "big" / "slide_part.png", image)
    out = tmp_path / "out"
    result = _scan(str(tile), "-o", str(out), "--model", str(tiny_model_dir), "--sample-id", "case 7",
                   "--tile-size", "256", "--overlap", "64")  # fmt: skip
    assert result.exit_code == 0, result.output
    (row,) = _rows(out)
    assert row["sample"] == "case 7" and row["nucleated"] == str(len(centres))
    run = json.loads((out / "run.json").read_text())["settings"]
    assert (run["tile_size"], run["overlap"]) == (256, 64)


def test_conf_option_changes_thresholds(
    tiny_model_dir: Path, tile_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    result = _scan(
        str(tile_folder), "-o", str(out), "--model", str(tiny_model_dir), "--conf", "0.9999"
    )
    assert result.exit_code == 0, result.output
    assert all(r["nucleated"] == "0" for r in _rows(out))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"][0]["provenance"]["thresholds"]["rbc"] == 0.9999


def test_failed_tiles_set_the_exit_code(
    tiny_model_dir: Path, tile_folder: Path, tmp_path: Path
) -> None:
    (tile_folder / "patient_A" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    result = _scan(str(tile_folder), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir))
    assert result.exit_code == EXIT_TILES_FAILED
    assert "1 tile(s) failed" in result.output


def test_unusable_sources_and_models_give_clear_errors(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    result = _scan(
        str(tmp_path / "nowhere"), "-o", str(tmp_path / "out"), "--model", str(tiny_model_dir)
    )
    assert result.exit_code == EXIT_USAGE and "no such file or folder" in result.output
    assert "scanning" not in result.output  # no empty progress bar above the error
    write_image(tmp_path / "t.png", disc_image(64, 64, 1)[0])
    result = _scan(
        str(tmp_path / "t.png"), "-o", str(tmp_path / "out2"), "--model", "no-such-model"
    )
    assert (
        result.exit_code == EXIT_USAGE
        and "no shipped model or model folder named 'no-such-model'" in result.output
    )
    result = _scan(str(tmp_path / "t.png"), "-o", str(tmp_path / "out3"), "--model", str(tiny_model_dir),
                   "--tile-size", "100")  # fmt: skip
    assert result.exit_code == EXIT_USAGE and "multiples of 32" in result.output


def test_a_mistyped_source_is_answered_before_the_pipeline_is_imported(tmp_path: Path) -> None:
    code = (
        "import sys; from typer.testing import CliRunner; from hemoscan.cli.app import app; "
        f"r = CliRunner().invoke(app, ['scan', 'nowhere', '-o', {str(tmp_path / 'out')!r}]); "
        "assert r.exit_code == 2 and 'nowhere: no such file or folder' in r.output, r.output; "
        "assert 'hemoscan.pipeline' not in sys.modules and 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=tmp_path)


def test_example_tiles_command(tmp_path: Path) -> None:
    result = runner.invoke(app, ["example-tiles", str(tmp_path / "ex"), "--n-tiles", "2"])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "ex").rglob("*.jpg"))) == 2
    assert "procedurally generated" in (tmp_path / "ex" / "README.txt").read_text().lower()
