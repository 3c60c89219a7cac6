"""A shipped model's ONNX export is pinned by the manifest, like its weights."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hemoscan.errors import WeightsIntegrityError
from hemoscan.models.loading import DEFAULT_MODEL, read_manifest, sha256_file, weights_dir
from hemoscan.models.onnx_format import ONNX_FILE, ONNX_SIDECAR, load_onnx_model, manifest_fields


@pytest.fixture
def shipped_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped models' folder, used as the shipped models."""
    copy = tmp_path / "weights"
    entry = read_manifest()[DEFAULT_MODEL]
    shutil.copytree(weights_dir() / entry["folder"], copy / entry["folder"])
    (copy / "manifest.json").write_text(json.dumps({DEFAULT_MODEL: entry}))
    monkeypatch.setenv("HEMOSCAN_WEIGHTS_DIR", str(copy))
    return copy / entry["folder"]


def test_the_manifest_records_the_default_models_export() -> None:
    folder = weights_dir() / read_manifest()[DEFAULT_MODEL]["folder"]
    assert read_manifest()[DEFAULT_MODEL]["onnx_sha256"] == sha256_file(folder / ONNX_FILE)
    assert manifest_fields(folder) == {"onnx_sha256": sha256_file(folder / ONNX_FILE)}


def test_an_export_replaced_together_with_its_sidecar_is_refused(shipped_copy: Path) -> None:
    assert load_onnx_model(DEFAULT_MODEL, threads=1).folder == shipped_copy
    onnx = shipped_copy / ONNX_FILE
    data = bytearray(onnx.read_bytes())
    data[-1] ^= 0xFF  # a different file, with a sidecar made to agree with it
    onnx.write_bytes(bytes(data))
    sidecar = json.loads((shipped_copy / ONNX_SIDECAR).read_text())
    sidecar["sha256"] = sha256_file(onnx)
    (shipped_copy / ONNX_SIDECAR).write_text(json.dumps(sidecar))
    with pytest.raises(WeightsIntegrityError, match="manifest.json records for the shipped model"):
        load_onnx_model(DEFAULT_MODEL, threads=1)
    # as a user's own folder it is judged by its sidecar alone: the hash checks pass, and only
    # onnxruntime finds the (here broken) graph
    with pytest.raises(WeightsIntegrityError, match="onnxruntime cannot load it"):
        load_onnx_model(str(shipped_copy), threads=1)


def test_a_shipped_export_the_manifest_does_not_know_is_refused(shipped_copy: Path) -> None:
    manifest_path = shipped_copy.parent / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    del manifest[DEFAULT_MODEL]["onnx_sha256"]
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(WeightsIntegrityError, match="none"):
        load_onnx_model(DEFAULT_MODEL, threads=1)
