"""A shipped model's ONNX exports (float32, and the int8 one it carries) are pinned by the
manifest, like its weights; ``precision`` picks between them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hemoscan.errors import ModelConfigError, WeightsIntegrityError
from hemoscan.models import onnx_format
from hemoscan.models.loading import read_manifest, sha256_file, weights_dir
from hemoscan.models.onnx_format import (
    INT8_FOLDER,
    ONNX_FILE,
    ONNX_SIDECAR,
    load_onnx_model,
    manifest_fields,
)

#: A shipped model with both exports (the default, hemoscan-lite0-v5, has no int8 one).
WITH_INT8 = "hemoscan-lite0-v4-fastbox"


@pytest.fixture
def shipped_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped models' folder, used as the shipped models."""
    copy = tmp_path / "weights"
    entry = read_manifest()[WITH_INT8]
    shutil.copytree(weights_dir() / entry["folder"], copy / entry["folder"])
    (copy / "manifest.json").write_text(json.dumps({WITH_INT8: entry}))
    monkeypatch.setenv("HEMOSCAN_WEIGHTS_DIR", str(copy))
    return copy / entry["folder"]


def test_the_manifest_records_a_shipped_models_exports() -> None:
    folder = weights_dir() / read_manifest()[WITH_INT8]["folder"]
    fp32, int8 = sha256_file(folder / ONNX_FILE), sha256_file(folder / INT8_FOLDER / ONNX_FILE)
    assert manifest_fields(folder) == {"onnx_sha256": fp32, "int8_onnx_sha256": int8}
    entry = read_manifest()[WITH_INT8]
    assert (entry["onnx_sha256"], entry["int8_onnx_sha256"]) == (fp32, int8)


@pytest.mark.parametrize(("precision", "quantized"), [
    (None, False), ("auto", False), ("fp32", False), ("int8", True),
])  # fmt: skip
def test_precision_picks_an_export_of_the_folder(precision, quantized: bool) -> None:
    model = load_onnx_model(WITH_INT8, threads=1, precision=precision)
    shipped = weights_dir() / read_manifest()[WITH_INT8]["folder"]
    assert (model.quantization is not None) is quantized
    assert model.folder == (shipped / INT8_FOLDER if quantized else shipped)
    assert model.sha256 == read_manifest()[WITH_INT8]["sha256"]  # the same weights either way


def test_a_folder_without_the_asked_precision_is_refused(shipped_copy: Path) -> None:
    int8 = shipped_copy / INT8_FOLDER
    with pytest.raises(ModelConfigError, match="quantized .* not float32"):
        load_onnx_model(str(int8), threads=1, precision="fp32")
    assert load_onnx_model(str(int8), threads=1, precision="int8").quantization
    shutil.rmtree(int8)
    with pytest.raises(ModelConfigError, match="holds no int8 export"):
        load_onnx_model(str(shipped_copy), threads=1, precision="int8")
    with pytest.raises(ModelConfigError, match="unknown precision 'fp16'"):
        load_onnx_model(str(shipped_copy), threads=1, precision="fp16")


def test_a_replaced_int8_export_is_refused(shipped_copy: Path) -> None:
    int8 = shipped_copy / INT8_FOLDER
    onnx = int8 / ONNX_FILE
    data = bytearray(onnx.read_bytes())
    data[-1] ^= 0xFF
    onnx.write_bytes(bytes(data))
    sidecar = json.loads((int8 / ONNX_SIDECAR).read_text())
    sidecar["sha256"] = sha256_file(onnx)
    (int8 / ONNX_SIDECAR).write_text(json.dumps(sidecar))
    with pytest.raises(WeightsIntegrityError, match="manifest.json records for the shipped model"):
        load_onnx_model(WITH_INT8, threads=1, precision="int8")
    assert load_onnx_model(WITH_INT8, threads=1, precision="fp32").quantization is None


def test_an_export_replaced_together_with_its_sidecar_is_refused(shipped_copy: Path) -> None:
    assert load_onnx_model(WITH_INT8, threads=1).folder == shipped_copy
    onnx = shipped_copy / ONNX_FILE
    data = bytearray(onnx.read_bytes())
    data[-1] ^= 0xFF  # a different file, with a sidecar made to agree with it
    onnx.write_bytes(bytes(data))
    sidecar = json.loads((shipped_copy / ONNX_SIDECAR).read_text())
    sidecar["sha256"] = sha256_file(onnx)
    (shipped_copy / ONNX_SIDECAR).write_text(json.dumps(sidecar))
    with pytest.raises(WeightsIntegrityError, match="manifest.json records for the shipped model"):
        load_onnx_model(WITH_INT8, threads=1)
    # as a user's own folder it is judged by its sidecar alone: the hash checks pass, and only
    # onnxruntime finds the (here broken) graph
    with pytest.raises(WeightsIntegrityError, match="onnxruntime cannot load it"):
        load_onnx_model(str(shipped_copy), threads=1)


def test_a_shipped_export_the_manifest_does_not_know_is_refused(shipped_copy: Path) -> None:
    manifest_path = shipped_copy.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest[WITH_INT8]["onnx_sha256"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(WeightsIntegrityError, match="none"):
        load_onnx_model(WITH_INT8, threads=1)


def test_an_8_bit_int8_export_on_a_cpu_without_vnni_is_run_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(onnx_format, "cpu_has_vnni", lambda: False)
    with caplog.at_level("WARNING", logger="hemoscan.models.onnx_format"):
        assert load_onnx_model(WITH_INT8, threads=1, precision="int8").quantization
    assert "this CPU has none" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING", logger="hemoscan.models.onnx_format"):
        load_onnx_model(WITH_INT8, threads=1, precision="fp32")
    assert not caplog.text


def test_a_shipped_model_without_an_int8_export_names_those_with_one() -> None:
    with pytest.raises(ModelConfigError, match=f"holds no int8 export.*--model .*{WITH_INT8}"):
        load_onnx_model("hemoscan-lite0-v5", threads=1, precision="int8")
