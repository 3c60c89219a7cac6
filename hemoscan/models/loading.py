"""Model folders: save, verify and load trained weights safely.

A model folder holds ``config.json`` (:class:`~hemoscan.models.config.ModelConfig`, including
the weights' sha256), ``model.safetensors`` and ``MODEL_CARD.md``. Shipped models live in the
project's ``weights/`` folder (installed as the package ``hemoscan_weights``), listed in ``weights/manifest.json`` with the sha256 of their
weights (``sha256``) and of their ``config.json`` (``config_sha256``); that manifest, not the
folder's own config, is the reference for a shipped model: a changed weights file or config
under a shipped name is refused. A user's own model folder may hold any valid config; scans
record its sha256 in their provenance.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import hemoscan_weights

from hemoscan.errors import ModelConfigError, UnknownModelError, WeightsIntegrityError
from hemoscan.models.config import ModelConfig

if TYPE_CHECKING:
    from torch import nn

DEFAULT_MODEL = "hemoscan-lite0-v5"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CARD_FILE = "MODEL_CARD.md"


def weights_dir() -> Path:
    """The folder of shipped models: ``$HEMOSCAN_WEIGHTS_DIR``, else the installed package
    ``hemoscan_weights`` (the project's ``weights/``)."""
    env = os.environ.get("HEMOSCAN_WEIGHTS_DIR")
    return Path(env) if env else Path(hemoscan_weights.__file__).resolve().parent


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest() -> dict[str, dict[str, str]]:
    """``weights/manifest.json``: shipped name -> ``{"folder", "sha256", "config_sha256"}``."""
    path = weights_dir() / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def manifest_entry(folder: Path) -> dict[str, str]:
    """The manifest entry of a model folder placed in ``weights/``."""
    return {
        "folder": folder.name,
        "sha256": sha256_file(folder / WEIGHTS_FILE),
        "config_sha256": sha256_file(folder / CONFIG_FILE),
    }


def list_shipped_models() -> list[str]:
    return sorted(read_manifest())


@dataclass(frozen=True)
class ShippedModel:
    """What ``hemoscan models`` shows of a shipped model: its config, as verified against the
    manifest, the manifest's weights sha256, the model folder, its size on disk in bytes (every
    file, exports included) and the exports the manifest pins (``"onnx fp32"``, ``"onnx int8"``)."""

    name: str
    config: ModelConfig
    sha256: str
    folder: Path
    size_bytes: int
    exports: tuple[str, ...] = ()


#: The manifest keys that pin a shipped model's float32 and int8 ONNX exports
#: (:mod:`hemoscan.models.onnx_format`), and what ``hemoscan models`` calls them.
ONNX_PIN, INT8_ONNX_PIN = "onnx_sha256", "int8_onnx_sha256"
PINNED_EXPORTS: dict[str, str] = {ONNX_PIN: "onnx fp32", INT8_ONNX_PIN: "onnx int8"}


def describe_shipped_models() -> list[ShippedModel]:
    """Every shipped model, by name; raises like :func:`load_model` on a changed config."""
    models = []
    manifest = read_manifest()
    for name in sorted(manifest):
        folder, sha256 = resolve_model_folder(name)
        config, _ = read_model_config(folder, name)
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
        entry = manifest[name]
        exports = tuple(label for key, label in PINNED_EXPORTS.items() if key in entry)
        models.append(ShippedModel(name, config, sha256 or "", folder, size, exports))
    return models


@dataclass(frozen=True)
class LoadedModel:
    """A verified model ready for a predictor: ``module`` is in eval mode on the CPU;
    ``sha256`` is its weights', ``config_sha256`` its ``config.json``'s."""

    config: ModelConfig
    module: nn.Module
    sha256: str
    folder: Path
    config_sha256: str = ""


def resolve_model_folder(name_or_path: str) -> tuple[Path, str | None]:
    """Return the model folder and the sha256 the manifest expects (None for user folders)."""
    manifest = read_manifest()
    if name_or_path in manifest:
        entry = manifest[name_or_path]
        return weights_dir() / entry["folder"], entry["sha256"]
    path = Path(name_or_path)
    if path.is_dir():
        return path, None
    close = difflib.get_close_matches(name_or_path, list(manifest), n=3)
    hint = f"; did you mean {', '.join(close)}?" if close else ""
    known = ", ".join(manifest) or "none"
    raise UnknownModelError(
        f"no shipped model or model folder named {name_or_path!r}{hint} (shipped: {known})"
    )


def read_model_config(folder: Path, name_or_path: str) -> tuple[ModelConfig, str]:
    """The validated config of a model folder and the sha256 of its ``config.json`` bytes.

    Under a shipped name, that sha256 must be the manifest's ``config_sha256``: a config
    edited in place (thresholds, scale, classes) is refused like replaced weights."""
    path = folder / CONFIG_FILE
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ModelConfigError(f"{path}: model config not found") from None
    except OSError as e:
        raise ModelConfigError(f"{path}: cannot read model config ({e.strerror or e})") from None
    actual = hashlib.sha256(data).hexdigest()
    entry = read_manifest().get(name_or_path)
    if entry is not None:
        expected = entry.get("config_sha256")
        if not expected:
            raise WeightsIntegrityError(
                f"{weights_dir() / 'manifest.json'}: the entry of {name_or_path!r} records no "
                "config_sha256; publish the model again (training/publish_model.py)"
            )
        if actual != expected:
            raise WeightsIntegrityError(
                f"{path}: sha256 {actual[:16]}... does not match the {expected[:16]}... the "
                f"manifest records for the shipped model {name_or_path!r}; the config was "
                "changed or replaced. Restore it, or copy the folder and scan with "
                "--model FOLDER (a model folder may hold any valid config)."
            )
    return ModelConfig.parse(data, path), actual


def load_model(name_or_path: str = DEFAULT_MODEL) -> LoadedModel:
    """Load a shipped model by name, or a model folder by path, checking its config and its
    weights' sha256 first."""
    folder, expected = resolve_model_folder(name_or_path)
    config, config_sha256 = read_model_config(folder, name_or_path)
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise WeightsIntegrityError(f"{weights}: weights file not found")
    expected = expected or config.weights_sha256
    if not expected:
        raise WeightsIntegrityError(f"{folder / CONFIG_FILE}: no weights_sha256 recorded")
    actual = sha256_file(weights)
    if actual != expected:
        raise WeightsIntegrityError(
            f"{weights}: sha256 {actual[:16]}... does not match the expected "
            f"{expected[:16]}...; the file is corrupted or was replaced. Restore it, "
            "or re-save the model folder if you changed it on purpose."
        )
    # torch (and the networks) load here, not with this module: an ONNX scan, which reads
    # model folders and the manifest through it, never needs torch (1.1 s of start-up)
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from hemoscan.models.registry import create_model

    module = create_model(config.architecture, num_classes=len(config.classes))
    try:
        state = load_file(weights)
        module.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError) as e:
        raise WeightsIntegrityError(f"{weights}: does not fit {config.architecture}: {e}") from None
    return LoadedModel(config=config, module=module.eval(), sha256=actual, folder=folder,
                       config_sha256=config_sha256)  # fmt: skip


def save_model_folder(module: nn.Module, config: ModelConfig, folder: Path) -> ModelConfig:
    """Write ``model.safetensors`` and ``config.json`` (with the weights' sha256) to ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    from safetensors.torch import save_file  # imports torch, see load_model

    save_file(state, folder / WEIGHTS_FILE)
    config = replace(config, weights_sha256=sha256_file(folder / WEIGHTS_FILE))
    config.write(folder / CONFIG_FILE)
    return config
