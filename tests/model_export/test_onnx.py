"""ONNX export and the onnxruntime backend.

Tolerance: an export's outputs (heatmap logits, log sizes, offsets) must equal PyTorch's within
``atol=1e-4`` (observed with torch 2.14.1 / onnxruntime 1.32: at most 3.4e-6 on heatmap logits of
a random-init ``centernet_mnv3s``, 4.8e-7 for the tiny model; sizes and offsets within 6e-8), and detections from ``Predictor(backend="onnx")`` must equal ``backend="torch"``'s:
same labels, boxes and scores within 1e-4.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from hemoscan.datamodel import CELL_CLASSES
from hemoscan.errors import ModelConfigError, WeightsIntegrityError
from hemoscan.inference.backends import OnnxBackend, TorchBackend
from hemoscan.inference.predictor import Predictor
from hemoscan.model_export.onnx import export_onnx
from hemoscan.models import ModelConfig, create_model, load_model, save_model_folder
from hemoscan.models.loading import WEIGHTS_FILE, sha256_file
from hemoscan.models.onnx_format import ONNX_FILE, ONNX_SIDECAR, load_onnx_model
from tests.conftest import disc_image

ATOL = 1e-4


@pytest.fixture(scope="module")
def tiny_onnx_dir(tiny_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(tiny_model, tmp_path_factory.mktemp("onnx") / "tiny-onnx")


@pytest.fixture(scope="module")
def mnv3s_model(tmp_path_factory: pytest.TempPathFactory):
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("models") / "mnv3s"
    config = ModelConfig(name="mnv3s-test", version="0", architecture="centernet_mnv3s", classes=CELL_CLASSES,
                         tile_size=256, overlap=64)  # fmt: skip
    save_model_folder(create_model("centernet_mnv3s", len(CELL_CLASSES)), config, folder)
    return load_model(str(folder))


@pytest.fixture(scope="module")
def mnv3s_onnx_dir(mnv3s_model, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return export_onnx(mnv3s_model, tmp_path_factory.mktemp("onnx") / "mnv3s-onnx")


def _max_diffs(model, onnx_dir: Path, shape: tuple[int, int, int, int]) -> list[float]:
    batch = np.random.default_rng(sum(shape)).standard_normal(shape).astype(np.float32)
    expected = TorchBackend(model.module)(batch)
    got = OnnxBackend(load_onnx_model(str(onnx_dir)).session)(batch)
    assert [g.shape for g in got] == [e.shape for e in expected]
    assert all(g.dtype == np.float32 for g in got)
    return [float(np.abs(e - g).max()) for e, g in zip(expected, got)]


def test_export_writes_a_model_folder(tiny_model, tiny_onnx_dir: Path) -> None:
    assert {p.name for p in tiny_onnx_dir.iterdir()} == {ONNX_FILE, ONNX_SIDECAR, "config.json"}
    sidecar = json.loads((tiny_onnx_dir / ONNX_SIDECAR).read_text())
    assert sidecar["file"] == ONNX_FILE and sidecar["opset"] == 17 and sidecar["stride"] == 4
    assert sidecar["sha256"] == sha256_file(tiny_onnx_dir / ONNX_FILE)
    assert sidecar["source_weights_sha256"] == tiny_model.sha256
    config = json.loads((tiny_onnx_dir / "config.json").read_text())
    assert config == json.loads((tiny_model.folder / "config.json").read_text())
    exported = load_onnx_model(str(tiny_onnx_dir))
    assert exported.config == tiny_model.config and exported.sha256 == tiny_model.sha256
    assert exported.onnx_sha256 == sidecar["sha256"] and exported.stride == 4


@pytest.mark.parametrize("shape", [(1, 3, 128, 96), (1, 3, 64, 224), (2, 3, 96, 160)])
def test_outputs_equal_pytorch_with_dynamic_shapes(tiny_model, tiny_onnx_dir, mnv3s_model, mnv3s_onnx_dir,
                                                   shape) -> None:  # fmt: skip
    for model, folder in ((tiny_model, tiny_onnx_dir), (mnv3s_model, mnv3s_onnx_dir)):
        diffs = _max_diffs(model, folder, shape)
        assert max(diffs) <= ATOL, (model.config.architecture, shape, diffs)


def _assert_same_detections(expected: list, got: list) -> None:
    assert len(got) == len(expected)
    for e, g in zip(expected, got):
        assert g.label == e.label
        assert g.score == pytest.approx(e.score, abs=ATOL)
        assert (g.x1, g.y1, g.x2, g.y2) == pytest.approx((e.x1, e.y1, e.x2, e.y2), abs=ATOL)


def test_onnx_detections_equal_torch_detections(tiny_model, tiny_onnx_dir: Path) -> None:
    image, centres = disc_image(300, 220, 8, seed=3)
    kwargs = {"tile_size": 128, "overlap": 32, "batch_size": 2}  # tiled, batches of 2 windows
    torch_dets = Predictor(tiny_model, **kwargs).predict(image)
    assert len(torch_dets) == len(centres)
    onnx_dets = Predictor(load_onnx_model(str(tiny_onnx_dir)), backend="onnx", **kwargs).predict(
        image
    )
    _assert_same_detections(torch_dets, onnx_dets)


def test_exporting_into_the_source_folder_serves_both_backends(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "both"
    shutil.copytree(tiny_model_dir, folder)
    model = load_model(str(folder))
    export_onnx(model, folder, check=False)
    image, _ = disc_image(160, 128, 3, seed=1)
    _assert_same_detections(
        Predictor(model).predict(image), Predictor(model, backend="onnx").predict(image)
    )


def test_onnx_backend_needs_an_export(tiny_model) -> None:
    with pytest.raises(ModelConfigError, match="hemoscan export"):
        Predictor(tiny_model, backend="onnx")
    with pytest.raises(ValueError, match="unknown backend"):
        Predictor(tiny_model, backend="tensorrt")


def test_corrupted_or_replaced_onnx_is_refused(
    tiny_onnx_dir: Path, mnv3s_onnx_dir: Path, tmp_path: Path
) -> None:
    corrupted = tmp_path / "corrupted"
    shutil.copytree(tiny_onnx_dir, corrupted)
    data = bytearray((corrupted / ONNX_FILE).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (corrupted / ONNX_FILE).write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError, match="corrupted or was replaced"):
        load_onnx_model(str(corrupted))
    replaced = tmp_path / "replaced"
    shutil.copytree(tiny_onnx_dir, replaced)
    shutil.copy(mnv3s_onnx_dir / ONNX_FILE, replaced / ONNX_FILE)
    with pytest.raises(WeightsIntegrityError, match="corrupted or was replaced"):
        load_onnx_model(str(replaced))
    (replaced / ONNX_FILE).unlink()
    with pytest.raises(WeightsIntegrityError, match="not found"):
        load_onnx_model(str(replaced))


def test_export_of_other_weights_is_refused(tiny_onnx_dir: Path, tmp_path: Path) -> None:
    stale = tmp_path / "stale"
    shutil.copytree(tiny_onnx_dir, stale)
    config = json.loads((stale / "config.json").read_text())
    config["weights_sha256"] = "f" * 64
    (stale / "config.json").write_text(json.dumps(config))
    with pytest.raises(WeightsIntegrityError, match="stale"):
        load_onnx_model(str(stale))


def test_export_refuses_a_folder_of_another_model(tiny_model, mnv3s_model, tmp_path: Path) -> None:
    folder = tmp_path / "other"
    shutil.copytree(mnv3s_model.folder, folder)
    with pytest.raises(Exception, match="another model's weights"):
        export_onnx(tiny_model, folder)
    assert sha256_file(folder / WEIGHTS_FILE) == mnv3s_model.sha256
