"""Which backend runs a model: ``auto`` takes a model's ONNX export on the CPU, else torch."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from hemoscan.errors import SettingsError
from hemoscan.inference.backends import resolve_backend, resolve_device
from hemoscan.inference.spec import resolve_predictor
from hemoscan.models.loading import DEFAULT_MODEL

pytest.importorskip("onnx")
from hemoscan.model_export.onnx import export_onnx  # noqa: E402
from hemoscan.models import load_model  # noqa: E402


@pytest.fixture(scope="module")
def folder_with_export(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("both") / "tiny-both"
    shutil.copytree(tiny_model_dir, folder)
    export_onnx(load_model(str(folder)), folder, check=False)
    return folder


def test_auto_runs_an_export_on_the_cpu_and_torch_elsewhere(folder_with_export: Path) -> None:
    assert resolve_backend("auto", str(folder_with_export), "cpu") == "onnx"
    assert resolve_backend("auto", str(folder_with_export), "cuda") == "torch"
    assert resolve_backend("auto", str(folder_with_export), "cuda:1") == "torch"


def test_auto_runs_torch_for_a_folder_without_export_or_a_loaded_model(
    tiny_model_dir: Path, tiny_model
) -> None:
    assert resolve_backend("auto", str(tiny_model_dir), "cpu") == "torch"
    assert resolve_backend("auto", tiny_model, "cpu") == "torch"


def test_a_named_backend_is_kept_and_an_unknown_one_refused(folder_with_export: Path) -> None:
    assert resolve_backend("torch", str(folder_with_export), "cpu") == "torch"
    assert resolve_backend("onnx", str(folder_with_export), "cpu") == "onnx"
    with pytest.raises(SettingsError, match="unknown backend 'tensorrt'"):
        resolve_backend("tensorrt", str(folder_with_export), "cpu")


def test_an_auto_device_goes_to_a_gpu_only_for_torch_or_auto() -> None:
    # without a GPU every choice lands on the CPU; onnx never asks for one
    assert resolve_device("auto", "onnx") == "cpu"
    assert resolve_device("cuda:0", "auto") == "cuda:0"


def test_the_shipped_default_model_runs_its_own_export_on_the_cpu() -> None:
    spec, model = resolve_predictor(DEFAULT_MODEL, backend="auto", device="cpu")
    assert (spec.backend, spec.precision, spec.quantization) == ("onnx", "fp32", None)
    assert spec.model_sha256 == load_model(DEFAULT_MODEL).sha256
    assert model.onnx_sha256 != model.sha256


def test_the_default_scan_on_the_cpu_imports_neither_torch_nor_torchvision(tmp_path: Path) -> None:
    """Importing torch was most of a plain scan's start-up; the ONNX path does without it."""
    import subprocess
    import sys

    from hemoscan.examples import write_example_tiles

    tiles = write_example_tiles(tmp_path / "tiles", n_tiles=1, seed=0)
    code = (
        "import sys; from hemoscan.pipeline import ScanOptions, scan; "
        f"s = scan([{str(tiles[0])!r}], {str(tmp_path / 'out')!r}, ScanOptions()); "
        "assert s.tiles_scanned_now == 1; "
        "assert s.samples[0].provenance.settings['backend'] == 'onnx'; "
        "loaded = [m for m in ('torch', 'torchvision') if m in sys.modules]; "
        "assert not loaded, loaded"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_a_loaded_model_runs_in_its_own_kind_by_default(
    folder_with_export: Path, tiny_model
) -> None:
    from hemoscan.inference.predictor import Predictor
    from hemoscan.models.onnx_format import load_onnx_model

    exported = load_onnx_model(str(folder_with_export))
    assert Predictor(exported, scale=0.5).spec.backend == "onnx"
    assert Predictor(tiny_model, scale=0.5).spec.backend == "torch"
    assert Predictor(str(folder_with_export), device="cpu").spec.backend == "onnx"
