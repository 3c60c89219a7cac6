"""Model architectures, their registry, configs and verified loading.

The names below are loaded on first use (PEP 562): ``hemoscan.models.config`` and the model
folders of ``hemoscan.models.loading`` are read without torch, which only the networks need.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_HOMES = {
    "ModelConfig": "config",
    "DEFAULT_MODEL": "loading",
    "LoadedModel": "loading",
    "load_model": "loading",
    "save_model_folder": "loading",
    "create_model": "registry",
    "list_models": "registry",
    "register_model": "registry",
}

__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    if name not in _HOMES:
        raise AttributeError(f"module 'hemoscan.models' has no attribute {name!r}")
    return getattr(import_module(f"hemoscan.models.{_HOMES[name]}"), name)
