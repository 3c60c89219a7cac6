"""The network of a training run: built from the config, frozen in part, started from weights,
and saved as the run's best model folder (``RUN/best``, loadable by ``load_model``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import torch
from torch import nn

from .config import ConfigError, TrainConfig
from .results import fmt

BEST_DIR = "best"


def _matches(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def freeze(model: nn.Module, prefixes: tuple[str, ...]) -> list[nn.Module]:
    """Stop gradients of the parameters under ``prefixes``; return the frozen modules (kept in
    eval mode while training, so their batch-norm statistics stay as loaded)."""
    prefixes = tuple(p.rstrip(".") for p in prefixes)
    names = [n for n, _ in model.named_parameters()]
    for p in prefixes:
        if not any(_matches(n, p) for n in names):
            raise ConfigError(f"model.freeze: {p!r} matches no parameter (e.g. {names[0]!r})")
    for n, param in model.named_parameters():
        if any(_matches(n, p) for p in prefixes):
            param.requires_grad_(False)
    return [m for n, m in model.named_modules() if n and any(_matches(n, p) for p in prefixes)]


def set_train_mode(model: nn.Module, frozen: list[nn.Module]) -> None:
    model.train()
    for m in frozen:
        m.eval()


def load_start_weights(model: nn.Module, source: str, cfg: TrainConfig) -> str:
    """Copy a hemoscan model's weights into ``model``; heatmap channels are matched by class
    name (classes the source lacks keep their fresh initialisation). With
    ``model.weights_prefixes`` only the parameters under those prefixes are copied (the only
    way to start from a model of another architecture). Returns a summary."""
    from hemoscan.errors import HemoscanError
    from hemoscan.models import load_model

    try:
        src = load_model(source)
    except HemoscanError as e:
        raise ConfigError(f"model.weights: {e}") from None
    prefixes = tuple(p.rstrip(".") for p in cfg.model.weights_prefixes)
    if src.config.architecture != cfg.model.architecture and not prefixes:
        raise ConfigError(f"model.weights: {source} is a {src.config.architecture}, "
                          f"not model.architecture {cfg.model.architecture}; "
                          "copy parts of it with model.weights_prefixes")  # fmt: skip
    theirs, mine = src.module.state_dict(), model.state_dict()
    wanted = [k for k in mine if not prefixes or any(_matches(k, p) for p in prefixes)]
    for p in prefixes:
        if not any(_matches(k, p) for k in mine):
            raise ConfigError(f"model.weights_prefixes: {p!r} matches no parameter")
    src_classes, classes = src.config.classes, cfg.model.classes
    shared = [c for c in classes if c in src_classes]
    with torch.no_grad():
        for key in wanted:
            value, other = mine[key], theirs.get(key)
            per_class = (
                key.startswith("heatmap.") and other is not None and src_classes != classes
                and other.shape[:1] == (len(src_classes),) and value.shape[:1] == (len(classes),)
                and other.shape[1:] == value.shape[1:]
            )  # fmt: skip
            if per_class:
                for c in shared:
                    value[classes.index(c)] = other[src_classes.index(c)]
            elif other is not None and other.shape == value.shape:
                value.copy_(other)
            else:
                got = "missing" if other is None else tuple(other.shape)
                raise ConfigError(
                    f"model.weights: {source}'s {key} ({got}) does not fit {tuple(value.shape)}"
                )
    if prefixes:
        return (f"{len(wanted)} of {len(mine)} tensors ({', '.join(prefixes)}) from {source}, "
                "the rest fresh")  # fmt: skip
    return f"started from {source} ({len(shared)}/{len(classes)} heatmap classes from it)"


def build_model(cfg: TrainConfig) -> tuple[nn.Module, list[nn.Module], str]:
    """The network (initialised as ``cfg.model`` says), its frozen modules and a summary."""
    from hemoscan.errors import UnknownModelError
    from hemoscan.models import create_model

    m = cfg.model
    pretrained = m.pretrained and m.weights is None
    try:
        model = create_model(
            m.architecture, num_classes=len(m.classes), pretrained_backbone=pretrained
        )
    except UnknownModelError as e:
        raise ConfigError(f"model.pretrained: {e}; set model.pretrained: false") from None
    except ImportError as e:
        raise ConfigError(f"model.pretrained: the ImageNet weights need {e.name!r}: "
                          "pip install 'hemoscan[train]'") from None  # fmt: skip
    start = "ImageNet backbone" if pretrained else "random initialisation"
    if m.weights:
        start = load_start_weights(model, m.weights, cfg)
    frozen = freeze(model, m.freeze)
    return model, frozen, start


def model_config(cfg: TrainConfig):  # type: ignore[no-untyped-def]
    """The ModelConfig written into ``best/config.json``."""
    from hemoscan.models import ModelConfig

    m = cfg.model
    description = " ".join(
        p for p in (m.description.strip(), f"Training run: {cfg.out.name}.") if p
    )
    return ModelConfig(
        name=m.name, version=m.version, architecture=m.architecture, classes=m.classes,
        mean=tuple(m.mean), std=tuple(m.std), score_thresholds=dict(m.score_thresholds),
        default_threshold=m.default_threshold, rbc_diameter_px=m.rbc_diameter_px,
        tile_size=m.tile_size, overlap=m.overlap, description=description,
        nms_ios=dict(m.nms_ios),
    )  # fmt: skip


def save_best(model: nn.Module, cfg: TrainConfig, epoch: int, metric: float) -> Path:
    """Write ``RUN/best`` (weights, config, a generated card) via a temporary folder."""
    from hemoscan.models import save_model_folder

    out = cfg.out
    tmp, old, best = out / (BEST_DIR + ".tmp"), out / (BEST_DIR + ".old"), out / BEST_DIR
    for p in (tmp, old):
        shutil.rmtree(p, ignore_errors=True)
    mc = save_model_folder(model, model_config(cfg), tmp)
    data = cfg.data
    sets = ("composed crops (hemoscan_training.data) from " + str(data.data_root) if data.source == "composed"
            else "; ".join(f"{e['format']} {e['root']}" for e in data.train))  # fmt: skip
    (tmp / "MODEL_CARD.md").write_text(
        f"# {mc.name} {mc.version}\n\nGenerated by `hemoscan train` from run `{out}` "
        f"(epoch {epoch}, selection metric {fmt(metric, '.4f')}; see `resolved.yaml` and "
        f"`results.csv` there).\n\n- architecture: {mc.architecture}\n- classes: {', '.join(mc.classes)}\n"
        f"- red-cell diameter: {mc.rbc_diameter_px:g} px\n- training data: {sets}\n\n"
        "Record the training data's licences and the evaluation before sharing this model. "
        "Research use only.\n"
    )
    if best.exists():
        best.rename(old)
    tmp.rename(best)
    shutil.rmtree(old, ignore_errors=True)
    return best
