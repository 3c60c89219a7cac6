import json
import shutil
from pathlib import Path

import pytest
import torch

from hemoscan.datamodel import CELL_CLASSES
from hemoscan.errors import ModelConfigError, UnknownModelError, WeightsIntegrityError
from hemoscan.models import ModelConfig, create_model, list_models, load_model, save_model_folder
from hemoscan.models import config as config_module
from hemoscan.models.loading import (
    CONFIG_FILE,
    DEFAULT_MODEL,
    WEIGHTS_FILE,
    manifest_entry,
    read_manifest,
    read_model_config,
    sha256_file,
    weights_dir,
)
from hemoscan.models.onnx_format import manifest_fields


def test_saved_folder_loads_with_identical_weights(tiny_model_dir: Path, tiny_model) -> None:
    config = json.loads((tiny_model_dir / "config.json").read_text())
    assert config["weights_sha256"] == sha256_file(tiny_model_dir / WEIGHTS_FILE)
    reference = create_model("tiny_blob", len(CELL_CLASSES)).state_dict()
    for name, tensor in tiny_model.module.state_dict().items():
        assert torch.equal(tensor, reference[name])


def test_corrupted_weights_are_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    data = bytearray((folder / WEIGHTS_FILE).read_bytes())
    data[-1] ^= 0xFF
    (folder / WEIGHTS_FILE).write_bytes(bytes(data))
    with pytest.raises(WeightsIntegrityError, match="does not match the expected"):
        load_model(str(folder))


def test_swapped_weights_are_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    save_model_folder(create_model("centernet_mnv3s", 5), ModelConfig(
        name="other", version="1", architecture="centernet_mnv3s", classes=CELL_CLASSES), other)  # fmt: skip
    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    shutil.copy(other / WEIGHTS_FILE, folder / WEIGHTS_FILE)
    with pytest.raises(WeightsIntegrityError, match="corrupted or was replaced"):
        load_model(str(folder))


def test_shipped_model_is_checked_against_the_manifest(
    tiny_model_dir: Path, tmp_path, monkeypatch
) -> None:
    weights = tmp_path / "weights"
    shutil.copytree(tiny_model_dir, weights / "tiny")
    manifest = {"tiny": {**manifest_entry(weights / "tiny"), "sha256": "0" * 64}}
    (weights / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("HEMOSCAN_WEIGHTS_DIR", str(weights))
    with pytest.raises(WeightsIntegrityError):
        load_model("tiny")
    manifest["tiny"] = manifest_entry(weights / "tiny")
    (weights / "manifest.json").write_text(json.dumps(manifest))
    model = load_model("tiny")
    assert model.config.name == "tiny-test"
    assert model.config_sha256 == sha256_file(weights / "tiny" / CONFIG_FILE)
    with pytest.raises(UnknownModelError, match="did you mean tiny"):
        load_model("tinyy")


def test_a_changed_config_under_a_shipped_name_is_refused(
    tiny_model_dir: Path, tmp_path, monkeypatch
) -> None:
    weights = tmp_path / "weights"
    shutil.copytree(tiny_model_dir, weights / "tiny")
    manifest = {"tiny": manifest_entry(weights / "tiny")}
    (weights / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("HEMOSCAN_WEIGHTS_DIR", str(weights))
    config = json.loads((weights / "tiny" / CONFIG_FILE).read_text())
    config["default_threshold"] = 0.05  # valid, but not what was shipped
    (weights / "tiny" / CONFIG_FILE).write_text(json.dumps(config))
    with pytest.raises(WeightsIntegrityError, match="shipped model 'tiny'.*changed or replaced"):
        load_model("tiny")
    # the same folder used as the user's own model folder: any valid config, its hash recorded
    own = load_model(str(weights / "tiny"))
    assert own.config.default_threshold == 0.05
    assert own.config_sha256 == sha256_file(weights / "tiny" / CONFIG_FILE)
    del manifest["tiny"]["config_sha256"]  # a manifest that does not cover the config
    (weights / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(WeightsIntegrityError, match="no config_sha256"):
        load_model("tiny")


def test_the_shipped_manifest_covers_the_default_models_config() -> None:
    entry = read_manifest()[DEFAULT_MODEL]
    folder = weights_dir() / entry["folder"]
    assert entry == {**manifest_entry(folder), **manifest_fields(folder)}
    config, digest = read_model_config(folder, DEFAULT_MODEL)
    assert digest == entry["config_sha256"] and config.name == DEFAULT_MODEL


def test_unknown_architecture_suggests_close_names() -> None:
    with pytest.raises(UnknownModelError, match="centernet_lite0"):
        create_model("centernet_lite", 5)
    assert {"centernet_lite0", "centernet_mnv3s"} <= set(list_models())


def test_test_networks_are_buildable_but_not_offered() -> None:
    assert "tiny_blob" not in list_models()
    assert create_model("tiny_blob", 5) is not None


@pytest.mark.parametrize("arch", ["centernet_lite0", "centernet_mnv3s", "tiny_blob"])
def test_architectures_follow_the_output_contract(arch: str) -> None:
    model = create_model(arch, 8).eval()
    with torch.inference_mode():
        heat, size, offset = model(torch.zeros(2, 3, 96, 128))
    s = model.stride
    assert heat.shape == (2, 8, 96 // s, 128 // s)
    assert size.shape == offset.shape == (2, 2, 96 // s, 128 // s)
    assert 0 <= offset.min() and offset.max() <= 1


def test_config_rejects_unknown_classes_and_bad_tiling() -> None:
    with pytest.raises(ModelConfigError, match="unknown class 'blast'"):
        ModelConfig(name="x", version="1", architecture="tiny_blob", classes=("rbc", "blast"))
    with pytest.raises(ModelConfigError, match="multiples of 32"):
        ModelConfig(
            name="x", version="1", architecture="tiny_blob", classes=("rbc",), tile_size=500
        )


def test_config_without_hash_is_refused(tiny_model_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    cfg = json.loads((folder / "config.json").read_text())
    cfg["weights_sha256"] = ""
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(WeightsIntegrityError, match="no weights_sha256"):
        load_model(str(folder))


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("default_threshold", float("nan"), "default_threshold must be a finite number in [0, 1] (got nan)"),
        ("default_threshold", -5, "default_threshold must be a finite number in [0, 1] (got -5)"),
        ("default_threshold", "NaN", "default_threshold must be a finite number in [0, 1] (got 'NaN')"),
        ("default_threshold", True, "default_threshold must be a finite number"),
        ("score_thresholds", {"rbc": 1.5}, "score_thresholds must be an object of class name"),
        ("score_thresholds", {"rbc": float("inf")}, "score_thresholds must be"),
        ("score_thresholds", {"blast": 0.5}, "score_thresholds names classes the model does not have"),
        ("nms_iou", 0, "nms_iou must be a finite number in (0, 1]"),
        ("nms_ios", {"rbc": -1}, "nms_ios must be an object of class name -> finite number"),
        ("nms_ios", {"blast": 0.5}, "nms_ios names classes the model does not have"),
        ("max_detections", 10**9, "max_detections must be an integer in [1, 100000]"),
        ("max_detections", 2.5, "max_detections must be an integer"),
        ("mean", [0.5, 0.5], "mean must be three finite numbers in [0, 1]"),
        ("std", [0.2, 0.0, 0.2], "std must be three finite numbers in (0, 1]"),
        ("rbc_diameter_px", -40, "rbc_diameter_px must be a finite number in (0, 1000]"),
        ("tile_size", 0, "tile_size must be an integer in [32, 16384]"),
        ("mpp", float("nan"), "mpp must be null or a finite number in (0, 100]"),
        ("weights_sha256", "not-a-hash", "weights_sha256 must be empty or 64 lower-case hex"),
        ("classes", ["rbc", "rbc"], "a class is listed twice"),
        ("classes", [], "classes must be a non-empty list"),
        ("name", "", "name must be a non-empty string"),
        ("version", 2, "version must be a string"),
    ],
)  # fmt: skip
def test_every_config_field_is_validated(
    tiny_model_dir: Path, tmp_path: Path, key: str, value, fragment: str
) -> None:
    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / CONFIG_FILE).read_text())
    config[key] = value
    (folder / CONFIG_FILE).write_text(json.dumps(config))  # NaN / Infinity as JSON literals
    with pytest.raises(ModelConfigError) as info:
        load_model(str(folder))
    assert str(folder / CONFIG_FILE) in str(info.value) and fragment in str(info.value)


def test_the_schema_covers_every_config_field() -> None:
    assert set(config_module._SCHEMA) == set(ModelConfig.__dataclass_fields__)


@pytest.mark.parametrize("text", ["[]", '"x"', "{", '{"name": "x"}'])
def test_configs_that_are_not_config_objects_are_refused(tmp_path: Path, text: str) -> None:
    (tmp_path / CONFIG_FILE).write_text(text)
    with pytest.raises(ModelConfigError, match="invalid model config"):
        ModelConfig.read(tmp_path / CONFIG_FILE)
