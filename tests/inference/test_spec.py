"""A predictor's settings are resolved once, into a spec that builds the predictor."""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path

import pytest

from hemoscan.errors import SettingsError
from hemoscan.inference.predictor import Predictor
from hemoscan.inference.spec import resolve_predictor
from tests.conftest import TINY_CONFIG, disc_image


def test_unset_settings_take_the_model_config_and_the_hardware(tiny_model) -> None:
    spec, model = resolve_predictor(tiny_model, device="cpu")
    assert model is tiny_model
    assert (spec.tile_size, spec.overlap, spec.scale) == (TINY_CONFIG.tile_size, TINY_CONFIG.overlap, 1.0)
    assert (spec.device, spec.batch_size, spec.backend) == ("cpu", 1, "torch")
    assert dict(spec.thresholds) == {c: TINY_CONFIG.threshold(c) for c in TINY_CONFIG.classes}
    assert spec.model_sha256 == tiny_model.sha256 and spec.config_sha256 == tiny_model.config_sha256
    assert Path(spec.model_folder).is_absolute()


def test_given_settings_win_and_the_spec_pickles(tiny_model) -> None:
    spec, _ = resolve_predictor(tiny_model, device="cpu", batch_size=3, conf=0.2, tile_size=128,
                                overlap=32, scale="AUTO")  # fmt: skip
    assert (spec.batch_size, spec.tile_size, spec.overlap, spec.scale) == (3, 128, 32, "auto")
    assert set(dict(spec.thresholds).values()) == {0.2} and spec.given_scale == 1.0
    assert pickle.loads(pickle.dumps(spec)) == spec  # what a Dask worker receives


def test_a_model_folder_name_is_loaded_for_its_backend(tiny_model_dir: Path, tiny_model) -> None:
    spec, model = resolve_predictor(str(tiny_model_dir), device="cpu")
    assert model.sha256 == tiny_model.sha256 and spec == resolve_predictor(tiny_model, device="cpu")[0]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"tile_size": 100}, "multiples of 32"),
        ({"overlap": 256}, "overlap < tile_size"),
        ({"scale": 0}, "positive number"),
        ({"backend": "tensorrt"}, "unknown backend"),
    ],
)
def test_bad_settings_are_one_clear_error(tiny_model, settings: dict, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        resolve_predictor(tiny_model, **settings)


def test_the_spec_builds_the_same_predictor_as_the_settings(tiny_model) -> None:
    spec, model = resolve_predictor(tiny_model, device="cpu", scale=0.5, tile_size=128, overlap=32)
    from_spec = Predictor(model, spec)
    from_settings = Predictor(tiny_model, device="cpu", scale=0.5, tile_size=128, overlap=32)
    assert from_spec.spec == from_settings.spec
    image, _ = disc_image(300, 200, 5, seed=3)
    assert from_spec.predict(image) == from_settings.predict(image)
    with pytest.raises(TypeError, match="not both"):
        Predictor(model, spec, scale=1.0)


def test_a_spec_refuses_another_model(tiny_model) -> None:
    spec, _ = resolve_predictor(tiny_model, device="cpu")
    with pytest.raises(SettingsError, match="not the 0000000000000000... of the spec"):
        Predictor(tiny_model, replace(spec, model_sha256="0" * 64))
    with pytest.raises(SettingsError, match="another config.json"):
        Predictor(tiny_model, replace(spec, config_sha256="1" * 64))


def test_a_spec_refuses_another_onnx_file_of_the_same_weights(tiny_model, tmp_path: Path) -> None:
    pytest.importorskip("onnx")
    from hemoscan.model_export.onnx import export_onnx
    from hemoscan.models.onnx_format import load_onnx_model

    spec, model = resolve_predictor(str(export_onnx(tiny_model, tmp_path / "a")), backend="auto",
                                    device="cpu")  # fmt: skip
    assert (spec.backend, spec.onnx_sha256) == ("onnx", model.onnx_sha256)
    other = load_onnx_model(str(export_onnx(tiny_model, tmp_path / "b", opset=16)))
    assert other.sha256 == model.sha256 and other.onnx_sha256 != model.onnx_sha256
    with pytest.raises(SettingsError, match="another ONNX file"):
        Predictor(other, spec)
