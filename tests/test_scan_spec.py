"""A scan's options are resolved once into the spec that run.json, provenance and engines read."""

from __future__ import annotations

import pytest

from hemoscan.errors import HemoscanError, SettingsError
from hemoscan.scan_spec import ScanOptions, resolve_scan


def test_run_settings_and_provenance_come_from_the_resolved_spec(tiny_model) -> None:
    spec, model = resolve_scan(ScanOptions(device="cpu", conf=0.25, mpp=0.2), tiny_model)
    assert model is tiny_model and spec.streams == 1 and spec.predictor.device == "cpu"
    settings = spec.run_settings()
    assert list(settings) == ["model_name", "model_sha256", "thresholds", "tile_size", "overlap",
                              "scale", "mpp", "quantization"]  # fmt: skip
    assert settings["thresholds"] == {c: 0.25 for c in tiny_model.config.classes}
    assert (settings["tile_size"], settings["scale"], settings["mpp"]) == (256, "auto", 0.2)
    assert spec.provenance_settings() == {"tile_size": 256, "overlap": 64, "scale": "auto",
                                          "backend": "torch", "precision": "fp32", "quantization": None}  # fmt: skip


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (ScanOptions(engine="spark"), "unknown engine 'spark'; choose from local, dask"),
        (ScanOptions(scheduler="tcp://x:1"), "needs the dask engine"),
        (ScanOptions(exports=("csv",)), r"unknown export format\(s\) \['csv'\]"),
        (ScanOptions(streams=0), "streams must be at least 1"),
        (ScanOptions(backend="tensorrt"), "unknown backend"),
        (ScanOptions(tile_size=100), "multiples of 32"),
    ],
)
def test_bad_options_are_settings_errors(tiny_model, options: ScanOptions, message: str) -> None:
    with pytest.raises(SettingsError, match=message) as caught:
        resolve_scan(options, tiny_model)
    assert isinstance(caught.value, HemoscanError) and isinstance(caught.value, ValueError)
