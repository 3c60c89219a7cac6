"""INT8 (static, QDQ) ONNX exports: ``export_onnx(..., quantize="int8")`` and ``hemoscan export
--quantize int8``.

Tolerance: an int8 graph cannot equal PyTorch within the 1e-4 of full-precision exports. On the
hand-set tiny disc detector, calibrated on disc tiles, it must still find the same discs as float32
on other disc images: same labels and boxes (within 0.5 px), scores within 0.01 (observed with
onnxruntime 1.32: scores within 6e-4, boxes equal), and heatmap probabilities within 0.01 on
average and 0.1 at most (observed: 8e-5 and 0.02). The export must really be quantized: its graph
holds QuantizeLinear/DequantizeLinear nodes and int8 weights, and differs from float32.
"""

from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from typer.testing import CliRunner

from hemoscan.cli.app import EXIT_USAGE, app
from hemoscan.datamodel import Detection
from hemoscan.errors import (
    ModelConfigError,
    OutputDirError,
    QuantizationError,
    SettingsError,
    SourceError,
    WeightsIntegrityError,
)
from hemoscan.hardware import cpu_has_vnni
from hemoscan.inference.backends import OnnxBackend
from hemoscan.inference.predictor import Predictor
from hemoscan.inference.preprocess import pad_to_multiple
from hemoscan.model_export import quantize
from hemoscan.model_export.onnx import export_onnx
from hemoscan.model_export.quantize import (
    EXAMPLE_TILES,
    USER_TILES,
    calibration_batch,
    float32_nodes,
)
from hemoscan.models import load_model
from hemoscan.models.loading import sha256_file
from hemoscan.models.onnx_format import (
    INPUT_NAME,
    INT8_FOLDER,
    ONNX_FILE,
    ONNX_SIDECAR,
    load_onnx_model,
)
from hemoscan.pipeline import ScanOptions, scan
from tests.conftest import TINY_CONFIG, disc_image, write_image

INT8 = "int8-static-qdq"
runner = CliRunner()


@pytest.fixture(scope="module")
def calibration_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Six disc tiles, three smaller than the model's 256 px window and three larger."""
    root = tmp_path_factory.mktemp("calibration") / "tiles"
    for i in range(6):
        size = (200, 160) if i % 2 else (300, 280)
        write_image(root / f"t{i}.png", disc_image(*size, 4 + i, seed=100 + i)[0])
    return root


@pytest.fixture(scope="module")
def fp32_dir(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(tiny_model, tmp_path_factory.mktemp("onnx") / "tiny-fp32")


@pytest.fixture(scope="module")
def int8_dir(tiny_model, calibration_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("onnx") / "tiny-int8"
    return export_onnx(tiny_model, folder, quantize="int8", calibration=[str(calibration_dir)])


def _heat_prob(logits: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-logits.astype(np.float64)))


def test_int8_export_writes_a_loadable_folder_that_records_its_quantization(
    tiny_model, fp32_dir: Path, int8_dir: Path
) -> None:
    assert {p.name for p in int8_dir.iterdir()} == {ONNX_FILE, ONNX_SIDECAR, "config.json"}
    sidecar = json.loads((int8_dir / ONNX_SIDECAR).read_text())
    record = sidecar["quantization"]
    assert record["method"] == INT8 and record["calibration"] == USER_TILES
    assert record["images"] == 6 and record["image_size"] == 256
    assert record["float32_onnx_sha256"] == sha256_file(fp32_dir / ONNX_FILE)
    assert sidecar["sha256"] == sha256_file(int8_dir / ONNX_FILE) != record["float32_onnx_sha256"]
    # really quantized: QDQ nodes, int8 weights, outputs that differ from float32
    graph = onnx.load(str(int8_dir / ONNX_FILE)).graph
    ops = {n.op_type for n in graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert any(t.data_type == onnx.TensorProto.INT8 for t in graph.initializer)
    assert 0 < record["mean_abs_heatmap_prob_diff"] <= record["max_abs_heatmap_prob_diff"] < 1
    # the stem (the node reading the image) and the prediction heads stay float32
    float32 = set(float32_nodes(graph))
    kept = [n.name for n in graph.node if n.op_type == "Conv" and n.name in float32]
    assert len(kept) == 4 and record["float32_nodes"] == kept  # darkness; heatmap, size, offset
    assert [n.name for n in graph.node if n.op_type == "Conv" and n.name not in kept] == ["/blur/Conv"]
    assert record["weights"].endswith("8-bit range (made on a CPU with VNNI)" if cpu_has_vnni()
                                      else "7-bit range (reduce_range)")  # fmt: skip

    exported = load_onnx_model(str(int8_dir))
    assert exported.quantization == INT8 and exported.quantization_record == record
    assert exported.sha256 == tiny_model.sha256 and exported.onnx_sha256 == sidecar["sha256"]
    assert load_onnx_model(str(fp32_dir)).quantization is None


def test_recorded_differences_are_those_measured_against_float32(
    tiny_model, fp32_dir: Path, int8_dir: Path, calibration_dir: Path
) -> None:
    record = load_onnx_model(str(int8_dir)).quantization_record
    assert record is not None
    batch = calibration_batch(tiny_model.config, [str(calibration_dir)])
    fp32 = OnnxBackend(load_onnx_model(str(fp32_dir)).session)
    int8 = OnnxBackend(load_onnx_model(str(int8_dir)).session)
    diffs = [
        np.abs(_heat_prob(fp32(a)[0]) - _heat_prob(int8(a)[0])).ravel()
        for a in batch.arrays
    ]
    every = np.concatenate(diffs)
    assert record["max_abs_heatmap_prob_diff"] == pytest.approx(every.max(), abs=2e-6)
    assert record["mean_abs_heatmap_prob_diff"] == pytest.approx(every.mean(), abs=2e-6)


def _key(d: Detection) -> tuple[str, int, int]:
    return d.label, round(d.x1), round(d.y1)


def test_int8_finds_the_same_discs_as_float32_on_other_images(tiny_model, int8_dir: Path) -> None:
    int8 = load_onnx_model(str(int8_dir))
    for seed in range(3):  # not the calibration tiles' seeds
        image, centres = disc_image(300, 220, 8, seed=seed)
        expected = sorted(Predictor(tiny_model).predict(image), key=_key)
        got = sorted(Predictor(int8, backend="onnx").predict(image), key=_key)
        assert len(expected) == len(got) == len(centres)
        for e, g in zip(expected, got):
            assert g.label == e.label and g.score == pytest.approx(e.score, abs=0.01)
            assert (g.x1, g.y1, g.x2, g.y2) == pytest.approx((e.x1, e.y1, e.x2, e.y2), abs=0.5)
        batch = pad_to_multiple(Predictor(tiny_model).normalise(image))[None]
        fp32_heat = _heat_prob(Predictor(tiny_model).backend(batch)[0])
        int8_heat = _heat_prob(OnnxBackend(int8.session)(batch)[0])
        diff = np.abs(fp32_heat - int8_heat)
        assert diff.mean() < 0.01 and diff.max() < 0.1, (diff.mean(), diff.max())


def test_calibration_images_are_preprocessed_as_the_predictor_does(
    tiny_model, calibration_dir: Path
) -> None:
    batch = calibration_batch(tiny_model.config, [str(calibration_dir / "t1.png"),
                                                  str(calibration_dir / "t0.png")])  # fmt: skip
    assert batch.kind == USER_TILES and batch.note.startswith("2 of your 2 tile")
    small, large = batch.arrays
    predictor = Predictor(tiny_model)
    image = disc_image(200, 160, 5, seed=101)[0]  # t1.png: PNG, lossless
    assert small.shape == (1, 3, 160, 224)  # padded to multiples of 32 ...
    np.testing.assert_array_equal(small[0, :, :, :200], predictor.normalise(image))
    assert not small[0, :, :, 200:].any()  # ... with zeros, as the predictor pads
    big = disc_image(300, 280, 4, seed=100)[0]
    assert large.shape == (1, 3, 256, 256)  # centre crop to the model's 256 px window
    np.testing.assert_array_equal(large[0], predictor.normalise(big[12:268, 22:278]))


def test_example_tiles_calibrate_without_user_tiles() -> None:
    batch = calibration_batch(TINY_CONFIG, None, max_images=3)
    assert batch.kind == EXAMPLE_TILES and len(batch.arrays) == 3
    assert all(a.shape == (1, 3, 256, 256) and a.dtype == np.float32 for a in batch.arrays)
    assert "procedurally generated" in batch.note and "your own tiles" in batch.note
    again = calibration_batch(TINY_CONFIG, None, max_images=3)  # same seed, same tiles
    assert all(np.array_equal(a, b) for a, b in zip(batch.arrays, again.arrays))


def test_tampered_int8_export_is_refused(int8_dir: Path, fp32_dir: Path, tmp_path: Path) -> None:
    flipped = tmp_path / "flipped"
    shutil.copytree(int8_dir, flipped)
    data = bytearray((flipped / ONNX_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (flipped / ONNX_FILE).write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError, match="corrupted or was replaced"):
        load_onnx_model(str(flipped))
    swapped = tmp_path / "swapped"  # the float32 graph under an int8 sidecar
    shutil.copytree(int8_dir, swapped)
    shutil.copy(fp32_dir / ONNX_FILE, swapped / ONNX_FILE)
    with pytest.raises(WeightsIntegrityError, match="corrupted or was replaced"):
        load_onnx_model(str(swapped))
    unknown = tmp_path / "unknown"
    shutil.copytree(int8_dir, unknown)
    sidecar = json.loads((unknown / ONNX_SIDECAR).read_text())
    sidecar["quantization"]["method"] = "int4-magic"
    (unknown / ONNX_SIDECAR).write_text(json.dumps(sidecar))
    with pytest.raises(ModelConfigError, match="int4-magic"):
        load_onnx_model(str(unknown))


def test_bad_quantization_requests_fail_before_writing(tiny_model, tmp_path: Path) -> None:
    out = tmp_path / "out"
    with pytest.raises(QuantizationError, match="unknown quantization 'int4'"):
        export_onnx(tiny_model, out, quantize="int4")
    with pytest.raises(QuantizationError, match="only used with quantize"):
        export_onnx(tiny_model, out, calibration=[str(tmp_path)])
    with pytest.raises(SourceError):
        export_onnx(tiny_model, out, quantize="int8", calibration=[str(tmp_path / "missing")])
    assert not out.exists()


def _settings(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())["settings"]


def test_scans_record_int8_and_refuse_to_resume_across_a_switch(
    tiny_model, fp32_dir: Path, int8_dir: Path, tile_folder: Path, tmp_path: Path
) -> None:
    int8, fp32 = load_onnx_model(str(int8_dir)), load_onnx_model(str(fp32_dir))
    onnx_options = ScanOptions(scale=1.0, backend="onnx", workers=0)
    scan([str(tile_folder)], tmp_path / "int8", onnx_options, model=int8)
    assert _settings(tmp_path / "int8")["quantization"] == INT8
    summary = json.loads((tmp_path / "int8" / "summary.json").read_text())
    settings = summary["samples"][0]["provenance"]["settings"]
    assert settings["backend"] == "onnx" and settings["quantization"] == INT8
    for other, options in ((fp32, onnx_options), (tiny_model, ScanOptions(scale=1.0, workers=0))):
        with pytest.raises(OutputDirError, match="quantization: 'int8-static-qdq' -> None"):
            scan([str(tile_folder)], tmp_path / "int8", options, model=other)

    scan([str(tile_folder)], tmp_path / "fp32", onnx_options, model=fp32)
    assert _settings(tmp_path / "fp32")["quantization"] is None
    with pytest.raises(OutputDirError, match="quantization: None -> 'int8-static-qdq'"):
        scan([str(tile_folder)], tmp_path / "fp32", onnx_options, model=int8)
    # float32 ONNX and torch agree within 1e-4: switching between them may still resume
    summary = scan([str(tile_folder)], tmp_path / "fp32", ScanOptions(scale=1.0, workers=0), model=tiny_model)
    assert summary.tiles_skipped == 6


def test_a_folder_carrying_an_int8_export_scans_with_it_and_resumes_at_its_own_precision(
    tiny_model_dir: Path, calibration_dir: Path, tile_folder: Path, tmp_path: Path
) -> None:
    """As the shipped models: float32 beside the weights, int8 in ``int8/``; ``--precision int8``
    runs the int8 one, and the plain command resumes a scan at the precision it started with."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    model = load_model(str(folder))
    export_onnx(model, folder)
    export_onnx(model, folder / INT8_FOLDER, quantize="int8", calibration=[str(calibration_dir)],
                calibration_images=2)  # fmt: skip
    auto = ScanOptions(model=str(folder), scale=1.0, workers=0)
    int8 = replace(auto, precision="int8")
    scan([str(tile_folder)], tmp_path / "auto", auto)
    assert _settings(tmp_path / "auto")["quantization"] is None
    scan([str(tile_folder)], tmp_path / "int8", int8)
    assert _settings(tmp_path / "int8")["quantization"] == INT8
    provenance = json.loads((tmp_path / "int8" / "summary.json").read_text())["samples"][0]["provenance"]
    assert provenance["settings"]["backend"] == "onnx" and provenance["settings"]["precision"] == "int8"

    assert scan([str(tile_folder)], tmp_path / "int8", auto).tiles_skipped == 6  # kept int8
    assert scan([str(tile_folder)], tmp_path / "auto", auto).tiles_skipped == 6
    with pytest.raises(OutputDirError, match="quantization: 'int8-static-qdq' -> None"):
        scan([str(tile_folder)], tmp_path / "int8", replace(auto, precision="fp32"))
    with pytest.raises(SettingsError, match="runs in onnxruntime"):
        scan([str(tile_folder)], tmp_path / "torch", replace(int8, backend="torch"))


def test_an_int8_export_in_the_source_folder_serves_both_backends(
    tiny_model_dir: Path, calibration_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "both"
    shutil.copytree(tiny_model_dir, folder)
    model = load_model(str(folder))
    export_onnx(model, folder, quantize="int8", calibration=[str(calibration_dir)],
                calibration_images=2)  # fmt: skip
    assert Predictor(model).quantization is None
    assert Predictor(model, backend="onnx").quantization == INT8


def test_cli_export_quantize_int8(
    tiny_model_dir: Path, calibration_dir: Path, tile_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "int8"
    args = ["export", str(tiny_model_dir), "--format", "onnx", "--out", str(out)]
    result = runner.invoke(app, [*args, "--quantize", "int8", "--calibration-images", "2"])
    assert result.exit_code == 0, result.output
    assert INT8 in result.output and "--backend onnx" in result.output
    assert "2 procedurally generated example tiles" in result.output
    assert "your own tiles" in result.output and "hemoscan evaluate" in result.output
    record = json.loads((out / ONNX_SIDECAR).read_text())["quantization"]
    assert (record["calibration"], record["images"]) == (EXAMPLE_TILES, 2)

    user = tmp_path / "int8-user"
    result = runner.invoke(app, ["export", str(tiny_model_dir), "--out", str(user), "--quantize",
                                 "int8", "--calibration", str(calibration_dir)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "6 of your 6 tile(s)" in result.output
    assert (
        json.loads((user / ONNX_SIDECAR).read_text())["quantization"]["calibration"] == USER_TILES
    )

    # a scan with it, then a resume with the float32 model, is refused
    scan_out = tmp_path / "scan"
    common = ["scan", str(tile_folder), "-o", str(scan_out), "-q", "--workers", "0"]
    result = runner.invoke(app, [*common, "--model", str(user), "--backend", "onnx"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, [*common, "--model", str(tiny_model_dir)])
    assert result.exit_code == EXIT_USAGE and "quantization" in result.output


def test_cli_export_rejects_bad_quantize_options(tiny_model_dir: Path, tmp_path: Path) -> None:
    args = ["export", str(tiny_model_dir), "--out", str(tmp_path / "out")]
    result = runner.invoke(app, [*args, "--quantize", "int4"])
    assert result.exit_code == EXIT_USAGE and "int4" in result.output
    result = runner.invoke(app, [*args, "--calibration", str(tmp_path)])
    assert result.exit_code == EXIT_USAGE
    assert "only used with --quantize int8" in result.output
    result = runner.invoke(app, [*args, "--quantize", "int8", "--calibration",
                                 str(tmp_path / "nowhere")])  # fmt: skip
    assert result.exit_code == EXIT_USAGE and "nowhere" in result.output
    assert not (tmp_path / "out").exists()


def test_a_failed_quantization_leaves_no_loadable_folder(
    tiny_model, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def broken(*args: object) -> tuple[float, float]:
        raise QuantizationError("the int8 graph's 'heatmap' output is wrong")

    monkeypatch.setattr(quantize, "_compare", broken)
    out = tmp_path / "int8"
    with pytest.raises(QuantizationError, match="'heatmap' output is wrong"):
        export_onnx(tiny_model, out, quantize="int8", calibration_images=1)
    assert not (out / ONNX_SIDECAR).exists()
    with pytest.raises(ModelConfigError, match="no ONNX export"):
        load_onnx_model(str(out))


def test_every_architectures_prediction_heads_stay_float32(tmp_path: Path) -> None:
    """What follows the shared features (backbone, FPN, smoothing) predicts scores and boxes:
    in the exported graph of every listed architecture, each such convolution stays float32,
    however the exporter names it (``/heatmap/heatmap.0/Conv``, or ``/heatmap.0/Conv`` where
    the forward pass calls slices of a head)."""
    import torch

    from hemoscan.models.registry import create_model, list_models

    shared = ("/backbone/", "/lateral", "/smooth/")
    for name in list_models():
        path = tmp_path / f"{name}.onnx"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(create_model(name, 8).eval(), (torch.zeros(1, 3, 64, 64),),
                              str(path), input_names=[INPUT_NAME], opset_version=17,
                              dynamo=False)  # fmt: skip
        graph = onnx.load(str(path)).graph
        heads = {n.name for n in graph.node
                 if n.op_type == "Conv" and not n.name.startswith(shared)}  # fmt: skip
        kept = set(float32_nodes(graph))
        assert heads and heads <= kept, (name, sorted(heads - kept))
        assert {n.name for n in graph.node if INPUT_NAME in n.input} <= kept
