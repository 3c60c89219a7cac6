"""Automatic magnification: each tile's scale from the cells in it, and a sample's consensus.

A model is trained at one red-cell diameter (``ModelConfig.rbc_diameter_px``, 40 px for the
shipped models) and tolerates a range around it. A tile's *scale* is the factor that brings
its red cells to that diameter: ``scale = rbc_diameter_px / d`` for a median red-cell diameter
of ``d`` input pixels. It is measured from the model's own detections
(:meth:`hemoscan.inference.predictor.Predictor.predict_scaled` runs the passes):

1. a coarse probe at :data:`PROBE_SCALE` (red cells of 80-190 px come to the 26-64 px the
   model knows; at the usual 30-50 px they come to 10-17 px, too small to be measured, and
   a network measures cells larger than it knows as fragments of familiar size, so only a
   coarse pass can tell a high magnification);
2. unless the probe measured its cells reliably, the tile at scale 1;
3. the tile at the estimated scale, unless a pass already run is within :data:`KEEP_RATIO`
   of it (the network tolerates that much, so that pass is kept).

Where a tile holds fewer than :data:`MIN_RBC` red cells (lavage, cytospins), the size of its
nucleated cells stands in, at :data:`NUCLEATED_TO_RBC` red-cell diameters each (a rougher
estimate: blood leukocytes measure about 2.0 red cells, lavage leukocytes about 1.4). A tile
with neither is *weak*: the scan settles it on its sample's consensus
(:func:`sample_consensus`: the median of the tiles' own estimates, outliers rejected).

Each tile's outcome is a :class:`~hemoscan.datamodel.ScaleEstimate` whose ``source`` is one
of :data:`SCALE_SOURCES`. No torch here: these are plain functions of detections.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from hemoscan.datamodel import Detection, ScaleEstimate, TileResult

__all__ = ["ScaleEstimate", "measure", "trusted", "keeps", "sample_consensus", "scale_summary"]

#: Where a tile's scale came from: its own red cells, its own nucleated cells, its sample's
#: consensus, the user (``--scale F``), a whole-slide image's µm per pixel, or nothing (a tile
#: too poor in cells, in a sample without any estimate: the model's own scale, 1, is assumed).
SCALE_SOURCES: tuple[str, ...] = (
    "auto-rbc", "auto-nucleated", "sample", "given", "slide-mpp", "default"
)  # fmt: skip
OWN_ESTIMATE = ("auto-rbc", "auto-nucleated")
AUTO = "auto"
#: The probe pass's scale: red cells of 80-190 input px come to the 26-64 px the model knows.
PROBE_SCALE = 1 / 3
#: A pass is kept when the estimated scale is within this ratio of the pass's scale either way.
KEEP_RATIO = 1.33
MIN_RBC = 6
MIN_NUCLEATED = 3
#: A free nucleated cell's diameter in red-cell diameters (blood ~2.0, lavage ~1.4, marrow ~1.5).
NUCLEATED_TO_RBC = 1.6
#: Red-cell sizes a pass measures reliably, in the model's red-cell diameters (22-62 px for a
#: 40 px model: about the 26-64 px it was trained on, the sizes it regresses towards at the ends).
TRUSTED_RANGE = (0.55, 1.55)
#: Tile estimates farther than this ratio from the sample's median are outliers.
OUTLIER_RATIO = 1.5


def _diameters(detections: Iterable[Detection], label: str) -> list[float]:
    return [((d.x2 - d.x1) + (d.y2 - d.y1)) / 2 for d in detections if d.label == label]


def _median(values: Sequence[float]) -> float:
    s = sorted(values)
    n = len(s)
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def measure(
    detections: Sequence[Detection], rbc_diameter_px: float
) -> tuple[float, str, float, int] | None:
    """``(estimate, source, cell_px, cells)`` from detections in one image's input pixels,
    or ``None`` when there are too few red cells and too few nucleated cells."""
    rbc = _diameters(detections, "rbc")
    if len(rbc) >= MIN_RBC:
        d = _median(rbc)
        return rbc_diameter_px / d, "auto-rbc", d, len(rbc)
    nucleated = _diameters(detections, "nucleated")
    if len(nucleated) >= MIN_NUCLEATED:
        d = _median(nucleated)
        return rbc_diameter_px * NUCLEATED_TO_RBC / d, "auto-nucleated", d, len(nucleated)
    return None


def trusted(estimate: float, pass_scale: float) -> bool:
    """Whether a pass at ``pass_scale`` saw the cells at sizes it measures reliably: the red
    cells (or their nucleated stand-in) it measured, ``pass_scale / estimate`` model red-cell
    diameters across, lie in :data:`TRUSTED_RANGE`."""
    lo, hi = TRUSTED_RANGE
    return lo <= pass_scale / estimate <= hi


def keeps(pass_scale: float, estimate: float) -> bool:
    """Whether a pass at ``pass_scale`` is close enough to ``estimate`` to be kept."""
    return 1 / KEEP_RATIO <= estimate / pass_scale <= KEEP_RATIO


def sample_consensus(estimates: Iterable[float]) -> float | None:
    """A sample's scale from its tiles' own estimates: the median (in log scale) of those within
    :data:`OUTLIER_RATIO` of the overall median; ``None`` without any estimate."""
    logs = [math.log(e) for e in estimates if e > 0 and math.isfinite(e)]
    if not logs:
        return None
    centre = _median(logs)
    inliers = [v for v in logs if abs(v - centre) <= math.log(OUTLIER_RATIO)]
    return math.exp(_median(inliers))


def parse_scale(value: str | float) -> float | str:
    """``"auto"`` or a positive finite factor, from a CLI or config value; ``ValueError``
    otherwise."""
    if isinstance(value, str) and value.strip().lower() == AUTO:
        return AUTO
    try:
        factor = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"scale must be 'auto' or a positive number, not {value!r}") from None
    if not (math.isfinite(factor) and factor > 0):
        raise ValueError(f"scale must be 'auto' or a positive number, not {value!r}")
    return factor


def scale_summary(tiles: Iterable[TileResult]) -> dict[str, dict[str, Any]]:
    """Per sample, how its tiles were scaled: ``consensus`` (:func:`sample_consensus` of the
    tiles' own estimates, ``None`` without any), ``estimates`` (``min``/``median``/``max``
    of them, or ``None``) and ``tiles_by_source`` (counts per :data:`SCALE_SOURCES` value)."""
    estimates: dict[str, list[float]] = {}
    sources: dict[str, Counter[str]] = {}
    for tile in tiles:
        if tile.scale is None:
            continue
        sources.setdefault(tile.sample, Counter())[tile.scale.source] += 1
        if tile.scale.source in OWN_ESTIMATE and tile.scale.estimate:
            estimates.setdefault(tile.sample, []).append(tile.scale.estimate)
    out = {}
    for sample, counts in sources.items():
        values = sorted(estimates.get(sample, []))
        consensus = sample_consensus(values)
        out[sample] = {
            "consensus": None if consensus is None else round(consensus, 4),
            "estimates": {"min": round(values[0], 4), "median": round(_median(values), 4),
                          "max": round(values[-1], 4)} if values else None,  # fmt: skip
            "tiles_by_source": {s: counts[s] for s in SCALE_SOURCES if counts[s]},
        }
    return out
