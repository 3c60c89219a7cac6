"""Training configuration: typed sections, YAML files, dotted overrides and validation.

A config file is YAML with up to six sections, each a dataclass of :mod:`.sections` (every
key has a default, so a file only states what differs)::

    model:    architecture, starting weights, frozen layers, what the saved model folder says
    data:     where crops come from (``composed`` recipe or ``annotated`` datasets), crop size,
              batch size, validation set, augmentation
    optim:    AdamW learning rate, weight decay, gradient clipping, non-finite loss guard
    schedule: epochs, steps per epoch, warmup + cosine, early stopping, model selection
    distill:  an optional teacher model and the weights of its loss term
    run:      output folder, seed, deterministic mode, resume, threads, workers, fraction

:func:`load_config` reads a file, applies ``--set section.key=value`` overrides (values are
YAML: ``--set schedule.best_metric=[rbc,nucleated]``) and the common flags, converts every
value to its declared type and checks it; a bad value raises :class:`ConfigError` naming the
dotted key. Relative paths written in a file are relative to the file's folder; relative
paths given on the command line (and ``run.out`` everywhere) are relative to the working
directory. :func:`write_resolved` saves the complete config as ``resolved.yaml`` in the run
folder, from which ``--resume`` reads it back.

The package: :mod:`.sections` (the schema), :mod:`.coerce` (generic YAML-to-type conversion and
dotted overrides), :mod:`.checks` (ranges and consistency); this module reads and writes files.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from .checks import validate
from .coerce import ConfigError, build, parse_override, set_dotted
from .sections import (
    DATASET_EXTRA_KEYS,
    DEFAULT_CLASSES,
    IMAGENET_MEAN,
    IMAGENET_STD,
    RESUME_FREE_KEYS,
    AugmentSection,
    ComposerSection,
    DataSection,
    DistillSection,
    ModelSection,
    OptimSection,
    RunSection,
    ScheduleSection,
    TrainConfig,
)

__all__ = [
    "DATASET_EXTRA_KEYS",
    "DEFAULT_CLASSES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "RESOLVED_FILE",
    "RESUME_FREE_KEYS",
    "AugmentSection",
    "ComposerSection",
    "ConfigError",
    "DataSection",
    "DistillSection",
    "ModelSection",
    "OptimSection",
    "RunSection",
    "ScheduleSection",
    "TrainConfig",
    "config_from_dict",
    "load_config",
    "parse_override",
    "read_yaml",
    "resume_differences",
    "validate",
    "write_resolved",
]

RESOLVED_FILE = "resolved.yaml"


def resolve_file_paths(raw: dict[str, Any], base: Path) -> None:
    """Make the relative paths written in a config file relative to its folder."""
    data = raw.get("data")
    if isinstance(data, dict):
        if isinstance(data.get("data_root"), str):
            data["data_root"] = str(base / Path(data["data_root"]).expanduser())
        for part in ("train", "val"):
            for entry in data.get(part) or ():
                if isinstance(entry, dict) and isinstance(entry.get("root"), str):
                    entry["root"] = str(base / Path(entry["root"]).expanduser())
    for section, key in (("model", "weights"), ("distill", "teacher")):
        part = raw.get(section)
        if isinstance(part, dict) and isinstance(part.get(key), str):
            candidate = base / Path(part[key]).expanduser()
            if candidate.exists():  # else a shipped model's name
                part[key] = str(candidate)



def read_yaml(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (model, data, optim, ...)")
    return raw


def load_config(
    path: Path | None = None,
    overrides: Sequence[str] = (),
    *,
    epochs: int | None = None,
    fraction: float | None = None,
    out: Path | None = None,
    seed: int | None = None,
    deterministic: bool | None = None,
    resume: bool | None = None,
    quiet: bool | None = None,
) -> TrainConfig:
    """The validated config from a YAML file (or the defaults), ``section.key=value``
    overrides and the common flags (``None``: not given), applied in that order.

    With ``resume`` and no ``path``, the config is read from ``OUT/resolved.yaml``.
    """
    if path is None and resume and out is not None and (Path(out) / RESOLVED_FILE).exists():
        path = Path(out) / RESOLVED_FILE
    raw: dict[str, Any] = {}
    if path is not None:
        raw = read_yaml(Path(path))
        resolve_file_paths(raw, Path(path).expanduser().absolute().parent)
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(raw, key, value, TrainConfig)
    flags = {"schedule.epochs": epochs, "run.fraction": fraction, "run.out": out,
             "run.seed": seed, "run.deterministic": deterministic, "run.resume": resume,
             "run.progress": None if quiet is None else not quiet}  # fmt: skip
    for key, value in flags.items():
        if value is not None:
            set_dotted(raw, key, str(value) if isinstance(value, Path) else value, TrainConfig)
    return validate(build(TrainConfig, raw, ""))


def config_from_dict(raw: Mapping[str, Any]) -> TrainConfig:
    """A validated config from its dict form (e.g. ``resolved.yaml``, paths absolute)."""
    return validate(build(TrainConfig, dict(raw), ""))


def write_resolved(config: TrainConfig, folder: Path) -> Path:
    """Write the complete config as ``folder/resolved.yaml`` (atomically)."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / RESOLVED_FILE
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(
        "# The complete config of this run, as resolved by hemoscan train (defaults filled in,\n"
        "# overrides applied, paths absolute). `hemoscan train --out RUN --resume` reads it.\n"
        + yaml.safe_dump(config.to_dict(), sort_keys=False, allow_unicode=True),
        encoding="utf-8",
    )
    tmp.replace(path)
    return path


def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping) and key.count(".") < 2 and not key.endswith("score_thresholds"):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


def resume_differences(saved: TrainConfig, current: TrainConfig) -> list[str]:
    """Dotted keys whose values differ between a run's saved config and the one given now,
    ignoring :data:`RESUME_FREE_KEYS`."""
    a, b = flatten(saved.to_dict()), flatten(current.to_dict())
    return sorted(
        k for k in a.keys() | b.keys() if k not in RESUME_FREE_KEYS and a.get(k) != b.get(k)
    )
