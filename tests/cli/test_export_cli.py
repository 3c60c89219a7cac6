"""``hemoscan export`` and ``hemoscan scan --backend onnx``: same detections as ``--backend torch``
(labels equal, scores and boxes within 1e-4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from hemoscan.cli.app import EXIT_USAGE, app

runner = CliRunner()
ATOL = 1e-4


def _detections(out: Path) -> list[dict]:
    rows = [
        json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines() if line
    ]
    return sorted(rows, key=lambda r: (r["sample"], r["tile"], r["y1"], r["x1"]))


def test_export_then_scan_with_onnx_matches_torch(
    tiny_model_dir: Path, tile_folder: Path, tmp_path: Path
) -> None:
    onnx_dir = tmp_path / "tiny-onnx"
    result = runner.invoke(
        app, ["export", str(tiny_model_dir), "--format", "onnx", "--out", str(onnx_dir)]
    )
    assert result.exit_code == 0, result.output
    assert "--backend onnx" in result.output and (onnx_dir / "model.onnx").is_file()

    outs = {}
    for backend, model in (("torch", tiny_model_dir), ("onnx", onnx_dir)):
        outs[backend] = tmp_path / f"out-{backend}"
        result = runner.invoke(app, ["scan", str(tile_folder), "-o", str(outs[backend]), "--model", str(model),
                                     "--backend", backend, "--batch-size", "2", "-q"])  # fmt: skip
        assert result.exit_code == 0, result.output
    torch_rows, onnx_rows = _detections(outs["torch"]), _detections(outs["onnx"])
    assert len(torch_rows) == len(onnx_rows) == 24
    for t, o in zip(torch_rows, onnx_rows):
        assert (o["sample"], o["tile"], o["label"]) == (t["sample"], t["tile"], t["label"])
        assert o["score"] == pytest.approx(t["score"], abs=ATOL)
        assert [o[k] for k in ("x1", "y1", "x2", "y2")] == pytest.approx(
            [t[k] for k in ("x1", "y1", "x2", "y2")], abs=ATOL
        )
    summary = json.loads((outs["onnx"] / "summary.json").read_text())
    provenance = summary["samples"][0]["provenance"]
    assert provenance["settings"]["backend"] == "onnx"
    assert (
        provenance["model_sha256"]
        == json.loads((tiny_model_dir / "config.json").read_text())["weights_sha256"]
    )


def test_onnx_backend_without_export_gives_a_clear_error(
    tiny_model_dir: Path, tile_folder: Path, tmp_path: Path
) -> None:
    result = runner.invoke(app, ["scan", str(tile_folder), "-o", str(tmp_path / "out"), "--model",
                                 str(tiny_model_dir), "--backend", "onnx"])  # fmt: skip
    assert result.exit_code == EXIT_USAGE
    assert "hemoscan export" in result.output
