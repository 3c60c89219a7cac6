"""The config carried with every model's weights (``config.json`` in a model folder)."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from hemoscan.datamodel import CELL_CLASSES, ENGULFED_TYPES
from hemoscan.errors import ModelConfigError

ENGULFED_PREFIX = "engulfed_"

#: Typical diameter of a red cell on a smear, micrometres: turns ``rbc_diameter_px`` into the
#: pixel size (µm per pixel) a model expects when its config gives no ``mpp``.
RBC_DIAMETER_UM: float = 7.5

#: The largest cell a model detects, in red-cell diameters: hemophagocytes are about 3-6 red
#: cells across. Sizes the overlap of whole-slide regions so such a cell is seen whole.
LARGEST_CELL_RBC_DIAMETERS: float = 6.0


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

    def __post_init__(self) -> None:
        for c in self.classes:
            base = c.removeprefix(ENGULFED_PREFIX)
            if c not in CELL_CLASSES and not (
                c.startswith(ENGULFED_PREFIX) and base in ENGULFED_TYPES
            ):
                raise ModelConfigError(f"model {self.name!r}: unknown class {c!r} in config")
        if self.tile_size % 32 or self.overlap % 32 or not 0 <= self.overlap < self.tile_size:
            raise ModelConfigError(
                f"model {self.name!r}: tile_size and overlap must be multiples of 32 with "
                f"0 <= overlap < tile_size (got {self.tile_size}, {self.overlap})"
            )
        if self.mpp is not None and not self.mpp > 0:
            raise ModelConfigError(f"model {self.name!r}: mpp must be positive (got {self.mpp})")
        if not self.rbc_diameter_px > 0:
            raise ModelConfigError(
                f"model {self.name!r}: rbc_diameter_px must be positive "
                f"(got {self.rbc_diameter_px})"
            )

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
        known = set(cls.__dataclass_fields__)
        unknown = set(d) - known
        if unknown:
            raise ModelConfigError(f"unknown config keys: {sorted(unknown)}")
        d = dict(d)
        for key in ("classes", "mean", "std"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    @classmethod
    def read(cls, path: Path) -> ModelConfig:
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except FileNotFoundError:
            raise ModelConfigError(f"{path}: model config not found") from None
        except (json.JSONDecodeError, TypeError, ModelConfigError) as e:
            raise ModelConfigError(f"{path}: invalid model config: {e}") from None

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2) + "\n")
