"""Model architectures, their registry, configs and verified loading."""

from hemoscan.models.config import ModelConfig
from hemoscan.models.loading import DEFAULT_MODEL, LoadedModel, load_model, save_model_folder
from hemoscan.models.registry import create_model, list_models, register_model

__all__ = [
    "DEFAULT_MODEL",
    "LoadedModel",
    "ModelConfig",
    "create_model",
    "list_models",
    "load_model",
    "register_model",
    "save_model_folder",
]
