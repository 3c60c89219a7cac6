"""Image-quality checks: measured on every tile as it is scanned, judged per tile and per sample.

A count is only as good as the image it was made on: a blurred field hides engulfed cells, a
washed-out or over-stained one changes what the model sees, and a few dozen cells give a rate
too imprecise to read. These checks say so next to the result; they never change it.

**Tile metrics** (:func:`tile_metrics`, at the model's scale: the image resized by the scan's
``scale`` so a red cell is about the size the model was trained on). Brightness is the
luminance (0.299 R + 0.587 G + 0.114 B); the *glass* is the 99th percentile of brightness (the
brightest thing on a brightfield smear); optical density (OD) is ``log10(glass / brightness)``.

========================  ======================================================================
``sharpness``             variance of the Laplacian of the image smoothed at σ = 1 px, divided by
                          the same at σ = 2 px: fine detail relative to coarse detail, so it does
                          not depend on contrast or on how many cells the field holds. Sharp
                          fields measure about 4-50, a defocus blur of σ = 1.5 px or more below 3
``laplacian_variance``    the numerator above (the classic focus measure, for reference)
``stained_fraction``      fraction of pixels with OD >= 0.10 or saturation >= 0.12 (the smear, not
                          the glass; the tissue rule of whole-slide scanning)
``glass_brightness``      the glass brightness, 0-255
``stain_density``         OD of the darkest 1% of pixels: the densest stain (nuclei); a washed-out
                          field has nothing dense
``rbc_hue``               hue (degrees) of detected red cells' centres, circular mean (>= 3 cells)
``nucleus_hue``           hue of the darkest 30% of detected nucleated cells' centres (>= 2 cells)
========================  ======================================================================

**Tile flags** (:data:`TILE_CHECKS`, thresholds in :class:`QCThresholds`): ``out_of_focus``
(sharpness below ``min_sharpness``, judged only where ``stained_fraction`` reaches
``min_stained_fraction``), ``washed_out`` (``stain_density`` below ``min_stain_density`` but
above ``blank_stain_density``: pale cells, not empty glass), ``over_stained`` (glass darker
than ``min_glass_brightness``: over-stained or under-exposed), ``rbc_colour`` and
``nucleus_colour`` (hue outside ``rbc_hue`` / ``nucleus_hue``, ranges read clockwise).

**Sample flags** (:data:`SAMPLE_CHECKS`): each tile flag when more than
``max_flagged_tile_fraction`` of the assessed tiles raise it; ``too_few_cells`` when fewer
than ``min_nucleated`` nucleated cells were assessed (the message gives the width of the
rate's 95% interval); ``failed_tiles`` when more than ``max_failed_fraction`` of the tiles
could not be read or scanned. A new check is one entry in :data:`TILE_CHECKS` (with the tile
metric it needs in :func:`tile_metrics`) or in :data:`SAMPLE_CHECKS`.

The defaults were set on public images (TXL-PBC validation fields and segpc marrow fields at
the model's scale) and the example tiles, with their blurred, washed-out and darkened copies;
they are starting points for a lab to adjust (``hemoscan scan|report --qc-config FILE``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from hemoscan.datamodel import Detection, QCFlag, SampleFindings, SampleQC, TileQC
from hemoscan.errors import HemoscanError
from hemoscan.stats import wilson_interval

#: Tiles named as examples per flag in a sample's record.
EXAMPLES_PER_FLAG = 5
#: A cell's colour must be at least this saturated for its hue to be measured.
MIN_HUE_SATURATION = 0.05
#: Cells of each kind whose colour is measured per tile (the best-scoring first).
MAX_CELLS_FOR_HUE = 30


@dataclass(frozen=True)
class QCThresholds:
    """Every threshold of the checks (see the module docstring for what each one judges).

    Hue ranges are ``(from, to)`` in degrees read clockwise, so ``(290, 40)`` spans magenta
    through red to orange.
    """

    min_sharpness: float = 3.0
    min_stained_fraction: float = 0.02
    min_stain_density: float = 0.12
    blank_stain_density: float = 0.04
    min_glass_brightness: float = 140.0
    rbc_hue: tuple[float, float] = (290.0, 40.0)
    nucleus_hue: tuple[float, float] = (220.0, 330.0)
    max_flagged_tile_fraction: float = 0.10
    min_nucleated: int = 500
    max_failed_fraction: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_mapping(cls, values: dict[str, Any], source: str = "QC thresholds") -> QCThresholds:
        """Defaults overridden by ``values``; an unknown key or a bad value is an error naming
        ``source``."""
        known = {f.name: f for f in fields(cls)}
        changes: dict[str, Any] = {}
        for key, value in values.items():
            if key not in known:
                names = ", ".join(known)
                raise HemoscanError(f"{source}: unknown QC threshold {key!r} (known: {names})")
            default = getattr(cls(), key)
            try:
                if isinstance(default, tuple):
                    low, high = (float(v) for v in value)
                    changes[key] = (low % 360, high % 360)
                elif isinstance(value, bool):
                    raise TypeError
                else:
                    changes[key] = type(default)(value)
            except (TypeError, ValueError):
                wanted = "two angles" if isinstance(default, tuple) else "a number"
                message = f"{source}: QC threshold {key!r} must be {wanted}, not {value!r}"
                raise HemoscanError(message) from None
        return replace(cls(), **changes)

    @classmethod
    def from_file(cls, path: str | Path) -> QCThresholds:
        """Thresholds from a JSON or YAML file holding a mapping of the keys to change."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                values = yaml.safe_load(text) or {}
            else:
                values = json.loads(text)
        except (OSError, ValueError) as e:
            raise HemoscanError(f"{path}: cannot read QC thresholds ({e})") from None
        if not isinstance(values, dict):
            raise HemoscanError(f"{path}: QC thresholds must be a mapping of names to values")
        return cls.from_mapping(values, str(path))


# --- tile metrics ------------------------------------------------------------------------


def _circular_mean(degrees: list[float]) -> float:
    angles = np.deg2rad(np.asarray(degrees, np.float64))
    return float(np.rad2deg(np.arctan2(np.sin(angles).mean(), np.cos(angles).mean())) % 360)


def _hues(mean_rgb: list[tuple[float, ...]]) -> list[float]:
    """Hues in degrees of mean RGB colours, leaving out grey ones (saturation below
    :data:`MIN_HUE_SATURATION`), whose hue means nothing."""
    if not mean_rgb:
        return []
    colours = np.array([[c[:3] for c in mean_rgb]], np.float32) / 255.0
    hsv = cv2.cvtColor(colours, cv2.COLOR_RGB2HSV)[0]
    return [float(h) for h, s, _ in hsv if s >= MIN_HUE_SATURATION]


def _cell_hue(
    image: np.ndarray, gray: np.ndarray, cells: list[Detection], darkest: float | None, minimum: int
) -> float | None:
    """Circular mean hue of the central half (in each direction) of at most
    :data:`MAX_CELLS_FOR_HUE` ``cells``, optionally of only their ``darkest`` fraction of
    pixels; ``None`` with fewer than ``minimum`` cells measured."""
    h, w = gray.shape
    colours = []
    for d in cells[:MAX_CELLS_FOR_HUE]:
        cx, cy, qw, qh = (d.x1 + d.x2) / 2, (d.y1 + d.y2) / 2, (d.x2 - d.x1) / 4, (d.y2 - d.y1) / 4
        x0, x1 = max(0, int(cx - qw)), min(w, int(np.ceil(cx + qw)))
        y0, y1 = max(0, int(cy - qh)), min(h, int(np.ceil(cy + qh)))
        if x1 <= x0 or y1 <= y0:
            continue
        mask = None
        if darkest is not None:
            patch = gray[y0:y1, x0:x1]
            mask = (patch <= _quantile(patch, darkest)).astype(np.uint8)
        colours.append(cv2.mean(image[y0:y1, x0:x1], mask=mask))
    hues = _hues(colours)
    return _circular_mean(hues) if len(hues) >= minimum else None


def _quantile(values: np.ndarray, q: float) -> float:
    """``np.quantile(values, q)`` (linear interpolation), from a partial sort: the same value
    in an eighth of the time, which counts with dozens of cells per tile."""
    flat = values.ravel()
    position = q * (flat.size - 1)
    lo = math.floor(position)
    hi = min(lo + 1, flat.size - 1)
    part = np.partition(flat, (lo, hi))
    low = float(part[lo])
    return low + (position - lo) * (float(part[hi]) - low)


def _laplacian_variance(gray: np.ndarray, sigma: float) -> float:
    """Variance of the Laplacian of uint8 ``gray`` smoothed by a Gaussian of ``sigma`` px, in
    float32."""
    # cv2.GaussianBlur's own float32 kernel, applied to the uint8 image: what it gives on the
    # image converted to float32 (to float32 rounding), reading a quarter of the memory
    kernel = cv2.getGaussianKernel(round(sigma * 8 + 1) | 1, sigma, cv2.CV_32F)
    smoothed = cv2.sepFilter2D(gray, cv2.CV_32F, kernel, kernel)
    laplacian = cv2.Laplacian(smoothed, cv2.CV_32F)
    return float(cv2.meanStdDev(laplacian)[1][0, 0]) ** 2


def tile_metrics(
    image: np.ndarray, detections: Iterable[Detection] = (), scale: float = 1.0
) -> dict[str, float | None]:
    """The metrics of one HWC uint8 RGB tile, measured after resizing it by ``scale`` (the
    scan's); ``detections`` are in the tile's pixels (used for the red-cell and nucleus hues)."""
    dets = list(detections)
    if scale != 1.0:
        h, w = image.shape[:2]
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        interpolation = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, size, interpolation=interpolation)
        dets = [replace(d, x1=d.x1 * scale, y1=d.y1 * scale, x2=d.x2 * scale, y2=d.y2 * scale)
                for d in dets]  # fmt: skip
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)  # brightness: luminance, 0-255
    saturation = cv2.cvtColor(image, cv2.COLOR_RGB2HSV)[..., 1]  # (max - min) / max, 0-255
    # OpenCV's histogram and thresholds: the same counts as numpy's, in a fraction of the time
    counts = cv2.calcHist([gray], [0], None, [256], [0, 256]).ravel().astype(np.int64)
    histogram = np.cumsum(counts)
    glass = max(float(np.searchsorted(histogram, 0.99 * histogram[-1])), 1.0)
    darkest = max(float(np.searchsorted(histogram, 0.01 * histogram[-1])), 1.0)
    # stained: OD >= 0.10 (gray <= glass / 10**0.10, gray an integer) or saturated (>= 0.12)
    dense = cv2.threshold(gray, math.floor(glass / 10**0.10), 255, cv2.THRESH_BINARY_INV)[1]
    saturated = cv2.threshold(saturation, round(0.12 * 255) - 1, 255, cv2.THRESH_BINARY)[1]
    stained = cv2.countNonZero(cv2.bitwise_or(dense, saturated))
    fine, coarse = _laplacian_variance(gray, 1.0), _laplacian_variance(gray, 2.0)
    metrics: dict[str, float | None] = {
        "sharpness": fine / coarse if coarse > 1e-6 else None,
        "laplacian_variance": fine,
        "stained_fraction": float(stained) / gray.size,
        "glass_brightness": glass,
        "stain_density": float(np.log10(glass / darkest)),
        "rbc_hue": _cell_hue(image, gray, [d for d in dets if d.label == "rbc"], None, 3),
        "nucleus_hue": _cell_hue(image, gray, [d for d in dets if d.label == "nucleated"], 0.3, 2),
    }
    return {k: None if v is None else round(v, 4) for k, v in metrics.items()}


# --- tile flags --------------------------------------------------------------------------


def _in_hue_range(hue: float, span: tuple[float, float]) -> bool:
    low, high = span
    return (hue - low) % 360 <= (high - low) % 360


@dataclass(frozen=True)
class TileCheck:
    """A tile flag: ``code``, what it means for a reader (``text``, completes "n of m tiles
    ..."), the rule that states it (``rule``, for the record) and the test."""

    code: str
    text: str
    rule: Callable[[QCThresholds], str]
    test: Callable[[dict[str, float | None], QCThresholds], bool]


def _value(metrics: dict[str, float | None], key: str) -> float | None:
    return metrics.get(key)


def _blurred(m: dict[str, float | None], t: QCThresholds) -> bool:
    sharpness, stained = _value(m, "sharpness"), _value(m, "stained_fraction")
    return (sharpness is not None and stained is not None and stained >= t.min_stained_fraction
            and sharpness < t.min_sharpness)  # fmt: skip


def _washed_out(m: dict[str, float | None], t: QCThresholds) -> bool:
    density = _value(m, "stain_density")
    return density is not None and t.blank_stain_density <= density < t.min_stain_density


def _dark(m: dict[str, float | None], t: QCThresholds) -> bool:
    glass = _value(m, "glass_brightness")
    return glass is not None and glass < t.min_glass_brightness


_Metrics = dict[str, float | None]


def _off_hue(
    key: str, span: Callable[[QCThresholds], tuple[float, float]]
) -> Callable[[_Metrics, QCThresholds], bool]:
    def test(m: _Metrics, t: QCThresholds) -> bool:
        hue = _value(m, key)
        return hue is not None and not _in_hue_range(hue, span(t))

    return test


def _span(span: tuple[float, float]) -> str:
    return f"{span[0]:g}°-{span[1]:g}°"


TILE_CHECKS: tuple[TileCheck, ...] = (
    TileCheck("out_of_focus", "out of focus",
              lambda t: f"sharpness < {t.min_sharpness:g}", _blurred),
    TileCheck("washed_out", "washed out (pale stain)",
              lambda t: f"densest stain OD < {t.min_stain_density:g}", _washed_out),
    TileCheck("over_stained", "dark: over-stained or under-exposed",
              lambda t: f"background brightness < {t.min_glass_brightness:g}", _dark),
    TileCheck("rbc_colour", "with red cells off their usual colour",
              lambda t: f"red-cell hue outside {_span(t.rbc_hue)}",
              _off_hue("rbc_hue", lambda t: t.rbc_hue)),
    TileCheck("nucleus_colour", "with nuclei off their usual colour",
              lambda t: f"nucleus hue outside {_span(t.nucleus_hue)}",
              _off_hue("nucleus_hue", lambda t: t.nucleus_hue)),
)  # fmt: skip
TILE_FLAG_TEXT = {c.code: c.text for c in TILE_CHECKS}


def tile_flags(metrics: dict[str, float | None], thresholds: QCThresholds) -> tuple[str, ...]:
    """Codes of the :data:`TILE_CHECKS` that ``metrics`` fail."""
    return tuple(c.code for c in TILE_CHECKS if c.test(metrics, thresholds))


def tile_qc(
    image: np.ndarray,
    detections: Iterable[Detection] = (),
    scale: float = 1.0,
    thresholds: QCThresholds = QCThresholds(),
) -> TileQC:
    """:func:`tile_metrics` of a tile and the flags they raise under ``thresholds``."""
    metrics = tile_metrics(image, detections, scale)
    return TileQC(metrics, tile_flags(metrics, thresholds))


# --- sample checks -----------------------------------------------------------------------


@dataclass(frozen=True)
class SampleQCInput:
    """What the sample checks read: the findings and the tiles' flags under the thresholds."""

    findings: SampleFindings
    tiles_assessed: int
    tiles_flagged: dict[str, int]
    ci95_width_per_1000: float | None
    thresholds: QCThresholds


def _tile_flag_check(check: TileCheck) -> Callable[[SampleQCInput], QCFlag | None]:
    def sample_check(s: SampleQCInput) -> QCFlag | None:
        n = s.tiles_flagged.get(check.code, 0)
        if not n or n / s.tiles_assessed <= s.thresholds.max_flagged_tile_fraction:
            return None
        return QCFlag(check.code, f"{n} of {s.tiles_assessed} tiles {check.text} "
                                  f"({check.rule(s.thresholds)})")  # fmt: skip

    return sample_check


def _too_few_cells(s: SampleQCInput) -> QCFlag | None:
    n, minimum = s.findings.nucleated_cells_assessed, s.thresholds.min_nucleated
    if n >= minimum:
        return None
    if n == 0:
        return QCFlag("too_few_cells", f"no nucleated cells assessed (minimum {minimum}): no rate")
    return QCFlag("too_few_cells", f"only {n} nucleated cells assessed (minimum {minimum}): the "
                                   f"rate is imprecise, its 95% CI spans "
                                   f"{s.ci95_width_per_1000:.0f} per 1000")  # fmt: skip


def _failed_tiles(s: SampleQCInput) -> QCFlag | None:
    failed, scanned = s.findings.tiles_failed, s.findings.tiles_scanned
    if not failed or failed / scanned <= s.thresholds.max_failed_fraction:
        return None
    return QCFlag("failed_tiles", f"{failed} of {scanned} tiles could not be read or scanned")


SAMPLE_CHECKS: tuple[Callable[[SampleQCInput], QCFlag | None], ...] = (
    *(_tile_flag_check(c) for c in TILE_CHECKS),
    _too_few_cells,
    _failed_tiles,
)


def rate_ci_width_per_1000(findings: SampleFindings) -> float | None:
    """Width of the 95% Wilson interval of hemophagocytes per 1000 nucleated cells."""
    n = findings.nucleated_cells_assessed
    if not n:
        return None
    low, high = wilson_interval(findings.counts.get("hemophagocyte", 0), n)
    return round(1000 * (high - low), 3)


class QCAccumulator:
    """Streams one sample's ``(tile name, TileQC)`` into flag counts, examples and metric means
    (memory does not grow with the tiles); :meth:`result` applies the sample checks."""

    def __init__(self, thresholds: QCThresholds = QCThresholds()) -> None:
        self.thresholds = thresholds
        self.assessed = 0
        self.flagged: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, name: str, qc: TileQC) -> None:
        """Count one tile; its flags are judged again from its metrics under the thresholds."""
        self.assessed += 1
        for code in tile_flags(qc.metrics, self.thresholds):
            self.flagged[code] = self.flagged.get(code, 0) + 1
            names = self.examples.setdefault(code, [])
            if len(names) < EXAMPLES_PER_FLAG:
                names.append(name)
        for key, value in qc.metrics.items():
            if value is not None:
                self.sums[key] = self.sums.get(key, 0.0) + value
                self.counts[key] = self.counts.get(key, 0) + 1

    def result(self, findings: SampleFindings) -> SampleQC:
        width = rate_ci_width_per_1000(findings)
        state = SampleQCInput(findings, self.assessed, self.flagged, width, self.thresholds)
        flags = tuple(flag for check in SAMPLE_CHECKS if (flag := check(state)) is not None)
        unmeasured = findings.tiles_scanned - findings.tiles_failed - self.assessed
        measures: dict[str, Any] = {
            "nucleated_cells_assessed": findings.nucleated_cells_assessed,
            "ci95_width_per_1000": width,
            "tiles_without_measurements": max(0, unmeasured),
            **{f"mean_{k}": round(self.sums[k] / self.counts[k], 4) for k in self.sums},
        }
        examples = {k: tuple(v) for k, v in self.examples.items()}
        return SampleQC(flags, self.assessed, dict(self.flagged), examples, measures,
                        self.thresholds.to_dict())  # fmt: skip


def sample_qc(
    findings: SampleFindings,
    tiles: Iterable[tuple[str, TileQC]],
    thresholds: QCThresholds = QCThresholds(),
) -> SampleQC:
    """The checks of one sample from its findings and its tiles' ``(name, TileQC)``."""
    acc = QCAccumulator(thresholds)
    for name, qc in tiles:
        acc.add(name, qc)
    return acc.result(findings)


def samples_qc(
    findings: Iterable[SampleFindings],
    tiles: Iterable[tuple[str, str, TileQC]],
    thresholds: QCThresholds = QCThresholds(),
) -> dict[str, SampleQC]:
    """:func:`sample_qc` of every sample, from one stream of ``(sample, tile, TileQC)``."""
    accumulators: dict[str, QCAccumulator] = {}
    for sample, tile, qc in tiles:
        accumulators.setdefault(sample, QCAccumulator(thresholds)).add(tile, qc)
    return {f.sample: accumulators.get(f.sample, QCAccumulator(thresholds)).result(f)
            for f in findings}  # fmt: skip
