"""The config carried with every model's weights (``config.json`` in a model folder)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hemoscan.datamodel import CELL_CLASSES, ENGULFED_PREFIX, ENGULFED_TYPES
from hemoscan.errors import ModelConfigError

#: Every architecture's largest stride: windows, overlaps and padded images are multiples of it.
ALIGN = 32

#: Typical diameter of a red cell on a smear, micrometres: turns ``rbc_diameter_px`` into the
#: pixel size (µm per pixel) a model expects when its config gives no ``mpp``.
RBC_DIAMETER_UM: float = 7.5

#: The largest cell a model detects, in red-cell diameters: hemophagocytes are about 3-6 red
#: cells across. Sizes the overlap of whole-slide regions so such a cell is seen whole.
LARGEST_CELL_RBC_DIAMETERS: float = 6.0


def check_tiling(tile_size: int, overlap: int) -> None:
    """Raise ``ValueError`` unless ``tile_size`` and ``overlap`` (pixels) are multiples of
    :data:`ALIGN` with ``0 <= overlap < tile_size``: the rule for every window grid."""
    if tile_size % ALIGN or overlap % ALIGN or not 0 <= overlap < tile_size:
        raise ValueError(
            f"tile_size and overlap must be multiples of {ALIGN} with 0 <= overlap < tile_size "
            f"(got {tile_size}, {overlap})"
        )


@dataclass(frozen=True)
class ModelConfig:
    """What a predictor needs besides the weights.

    ``classes`` names the heatmap channels in order: cell classes from
    :data:`~hemoscan.datamodel.CELL_CLASSES` and engulfed-cell classes ``engulfed_<type>``.
    ``mean``/``std`` normalise RGB scaled to [0, 1]. ``rbc_diameter_px`` is the red-cell
    diameter the model was trained at; ``tile_size``/``overlap`` are the default tiling.
    Duplicates are suppressed class by class (see
    :func:`hemoscan.inference.postprocess.suppress_duplicates`): by IoU above ``nms_iou``, then
    by intersection over the smaller box above the box's class's ``nms_ios`` (absent: off), which
    removes a box nested in a higher-scoring one and the two slightly different boxes two
    windows give one cell.
    ``mpp`` is the pixel size of the model's input in µm per pixel, if known; without it
    (configs written before it existed) :attr:`input_mpp` derives it from ``rbc_diameter_px``.
    ``license`` is the licence the weights are under (for trained weights, the most restrictive
    terms of their training data), as ``hemoscan models`` shows it.
    """

    name: str
    version: str
    architecture: str
    classes: tuple[str, ...]
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    score_thresholds: dict[str, float] = field(default_factory=dict)
    default_threshold: float = 0.3
    nms_iou: float = 0.5
    nms_ios: dict[str, float] = field(default_factory=dict)
    max_detections: int = 1000
    rbc_diameter_px: float = 40.0
    tile_size: int = 1024
    overlap: int = 256
    weights_sha256: str = ""
    description: str = ""
    mpp: float | None = None
    license: str = ""

    def __post_init__(self) -> None:
        for key, (valid, meaning) in _SCHEMA.items():
            value = getattr(self, key)
            if not valid(value):
                raise ModelConfigError(
                    f"model {self.name!r}: {key} must be {meaning} (got {value!r})"
                )
        for c in self.classes:
            base = c.removeprefix(ENGULFED_PREFIX)
            if c not in CELL_CLASSES and not (
                c.startswith(ENGULFED_PREFIX) and base in ENGULFED_TYPES
            ):
                raise ModelConfigError(f"model {self.name!r}: unknown class {c!r} in config")
        if len(set(self.classes)) != len(self.classes):
            raise ModelConfigError(f"model {self.name!r}: a class is listed twice in {self.classes}")
        for key in ("score_thresholds", "nms_ios"):
            unknown = sorted(set(getattr(self, key)) - set(self.classes))
            if unknown:
                raise ModelConfigError(
                    f"model {self.name!r}: {key} names classes the model does not have: {unknown}"
                )
        try:
            check_tiling(self.tile_size, self.overlap)
        except ValueError as e:
            raise ModelConfigError(f"model {self.name!r}: {e}") from None

    @property
    def input_mpp(self) -> float:
        """µm per pixel of the model's input: ``mpp``, else ``RBC_DIAMETER_UM / rbc_diameter_px``
        (0.1875 for a model trained at red cells of 40 px)."""
        return self.mpp if self.mpp is not None else RBC_DIAMETER_UM / self.rbc_diameter_px

    @property
    def largest_cell_px(self) -> float:
        """Diameter of the largest cell the model detects (a hemophagocyte), input pixels."""
        return LARGEST_CELL_RBC_DIAMETERS * self.rbc_diameter_px

    def threshold(self, label: str) -> float:
        return self.score_thresholds.get(label, self.default_threshold)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        if not isinstance(d, dict):
            raise ModelConfigError(f"expected a JSON object, got {type(d).__name__}")
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ModelConfigError(f"unknown config keys: {sorted(unknown)}")
        missing = sorted(k for k in ("name", "version", "architecture", "classes") if k not in d)
        if missing:
            raise ModelConfigError(f"missing config keys: {missing}")
        d = dict(d)
        for key in ("classes", "mean", "std"):
            if isinstance(d.get(key), list):
                d[key] = tuple(d[key])
        return cls(**d)

    @classmethod
    def read(cls, path: Path) -> ModelConfig:
        try:
            return cls.parse(path.read_bytes(), path)
        except FileNotFoundError:
            raise ModelConfigError(f"{path}: model config not found") from None
        except OSError as e:
            raise ModelConfigError(f"{path}: cannot read model config ({e.strerror or e})") from None

    @classmethod
    def parse(cls, data: bytes, path: Path) -> ModelConfig:
        """The config in the bytes of ``path`` (``config.json``), every field validated."""
        try:
            return cls.from_dict(json.loads(data))
        except (ValueError, TypeError, ModelConfigError) as e:
            raise ModelConfigError(f"{path}: invalid model config: {e}") from None

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")


def _is_number(value: Any, low: float, high: float, low_open: bool = False) -> bool:
    """A finite int or float (not a bool) in ``[low, high]`` (``(low, high]`` if ``low_open``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return math.isfinite(value) and (low < value if low_open else low <= value) and value <= high


def _is_int(value: Any, low: int, high: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and low <= value <= high


def _is_text(value: Any, non_empty: bool = False) -> bool:
    return isinstance(value, str) and (bool(value.strip()) or not non_empty)


def _is_triple(value: Any, low: float, high: float, low_open: bool = False) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 3 and all(
        _is_number(v, low, high, low_open) for v in value
    )


_SHA256 = re.compile(r"^[0-9a-f]{64}$")

#: Every ``config.json`` field: ``(check, what it must be)``. Values outside these ranges are
#: refused when a config is built or read, never clipped.
_SCHEMA: dict[str, tuple[Callable[[Any], bool], str]] = {
    "name": (lambda v: _is_text(v, non_empty=True), "a non-empty string"),
    "version": (_is_text, "a string"),
    "architecture": (lambda v: _is_text(v, non_empty=True), "a non-empty string"),
    "classes": (
        lambda v: isinstance(v, (tuple, list)) and len(v) > 0 and all(_is_text(c) for c in v),
        "a non-empty list of class names",
    ),
    "mean": (lambda v: _is_triple(v, 0.0, 1.0), "three finite numbers in [0, 1]"),
    "std": (lambda v: _is_triple(v, 0.0, 1.0, low_open=True), "three finite numbers in (0, 1]"),
    "score_thresholds": (
        lambda v: isinstance(v, dict)
        and all(_is_text(k) and _is_number(t, 0.0, 1.0) for k, t in v.items()),
        "an object of class name -> finite threshold in [0, 1]",
    ),
    "default_threshold": (lambda v: _is_number(v, 0.0, 1.0), "a finite number in [0, 1]"),
    "nms_iou": (lambda v: _is_number(v, 0.0, 1.0, low_open=True), "a finite number in (0, 1]"),
    "nms_ios": (
        lambda v: isinstance(v, dict)
        and all(_is_text(k) and _is_number(t, 0.0, 1.0, low_open=True) for k, t in v.items()),
        "an object of class name -> finite number in (0, 1]",
    ),
    "max_detections": (lambda v: _is_int(v, 1, 100_000), "an integer in [1, 100000]"),
    "rbc_diameter_px": (
        lambda v: _is_number(v, 0.0, 1000.0, low_open=True), "a finite number in (0, 1000]"
    ),
    "tile_size": (lambda v: _is_int(v, 32, 16384), "an integer in [32, 16384]"),
    "overlap": (lambda v: _is_int(v, 0, 16384), "an integer in [0, 16384]"),
    "weights_sha256": (
        lambda v: isinstance(v, str) and (v == "" or bool(_SHA256.match(v))),
        "empty or 64 lower-case hex digits",
    ),
    "description": (_is_text, "a string"),
    "license": (_is_text, "a string"),
    "mpp": (
        lambda v: v is None or _is_number(v, 0.0, 100.0, low_open=True),
        "null or a finite number in (0, 100] (µm per pixel)",
    ),
}
