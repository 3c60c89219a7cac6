"""Model folders: save, verify and load trained weights safely.

A model folder holds ``config.json`` (:class:`~hemoscan.models.config.ModelConfig`, including
the weights' sha256), ``model.safetensors`` and ``MODEL_CARD.md``. Shipped models live in the
project's ``weights/`` folder, listed with their sha256 in ``weights/manifest.json``; that
manifest, not the folder's own config, is the reference for a shipped model.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path

from torch import nn

from hemoscan.errors import UnknownModelError, WeightsIntegrityError
from hemoscan.models.config import ModelConfig
from hemoscan.models.registry import create_model

DEFAULT_MODEL = "hemoscan-lite0-v2"
WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def weights_dir() -> Path:
    """The folder of shipped models: ``$HEMOSCAN_WEIGHTS_DIR`` or the project's ``weights/``."""
    env = os.environ.get("HEMOSCAN_WEIGHTS_DIR")
    return Path(env) if env else Path(__file__).resolve().parents[2] / "weights"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest() -> dict[str, dict[str, str]]:
    path = weights_dir() / "manifest.json"
    return json.loads(path.read_text()) if path.exists() else {}


def list_shipped_models() -> list[str]:
    return sorted(read_manifest())


@dataclass(frozen=True)
class LoadedModel:
    """A verified model ready for a predictor: ``module`` is in eval mode on the CPU."""

    config: ModelConfig
    module: nn.Module
    sha256: str
    folder: Path


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


def load_model(name_or_path: str = DEFAULT_MODEL) -> LoadedModel:
    """Load a shipped model by name, or a model folder by path, checking its sha256 first."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder, expected = resolve_model_folder(name_or_path)
    config = ModelConfig.read(folder / CONFIG_FILE)
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
    module = create_model(config.architecture, num_classes=len(config.classes))
    try:
        state = load_file(weights)
        module.load_state_dict(state, strict=True)
    except (SafetensorError, RuntimeError) as e:
        raise WeightsIntegrityError(f"{weights}: does not fit {config.architecture}: {e}") from None
    return LoadedModel(config=config, module=module.eval(), sha256=actual, folder=folder)


def save_model_folder(module: nn.Module, config: ModelConfig, folder: Path) -> ModelConfig:
    """Write ``model.safetensors`` and ``config.json`` (with the weights' sha256) to ``folder``."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(state, folder / WEIGHTS_FILE)
    config = replace(config, weights_sha256=sha256_file(folder / WEIGHTS_FILE))
    config.write(folder / CONFIG_FILE)
    return config
