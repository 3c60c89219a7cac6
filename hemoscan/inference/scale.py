"""Automatic magnification: each tile's scale from the cells in it, and a sample's consensus.

A model is trained at one red-cell diameter (``ModelConfig.rbc_diameter_px``, 40 px for the
shipped models) and tolerates a range around it. A tile's *scale* is the factor that brings
its red cells to that diameter: ``scale = rbc_diameter_px / d`` for a median red-cell diameter
of ``d`` input pixels. It is measured from the model's own detections
(:meth:`hemoscan.inference.predictor.Predictor.predict_scaled` runs the passes):

1. the tile at scale 1; when its own red cells, measured reliably, put it close enough to
   scale 1 (:func:`keeps`) and cover at least :data:`MIN_SETTLING_COVERAGE` of it
   (:func:`settled_at_scale_one`), that pass is the answer: a tile at the model's
   magnification costs one pass;
2. otherwise a coarse probe at :data:`PROBE_SCALE` too (red cells of 80-190 px come to the
   26-64 px the model knows), also when the scale-1 pass found red cells smaller than the
   model's: at a 100x oil magnification platelets and parasites pass for small red cells at
   scale 1 while the real ones are seen only by the probe (without it, session 6's shortcut
   enlarged a held-out parasite-laden Giemsa field 2.2x instead of shrinking it to 0.24).
   A probe too poor in cells to measure is read again below the thresholds where the scale-1
   pass saw only a few large objects (:func:`probe_worth_rereading`), for the red cells the
   scale-1 pass called nothing else (:func:`unclaimed_red_cells`; never reported).
   Each pass's measurement counts only if the cells it rests on were
   seen at sizes the network measures reliably (:func:`trusted`): a network measures cells much
   larger than it knows as fragments of a familiar size, and clusters of cells much smaller as
   single cells; of the trusted ones, the pass whose cells the network is most confident of
   (:attr:`Measurement.confidence`, the mean score of its best ten) wins. Where the two passes'
   trusted red-cell readings are more than :data:`AMBIGUOUS_RATIO` apart, they read different
   objects as red cells: each reading gets a pass at its own scale first, and the winner is the
   red-cell reading, among all the passes, whose cells cover the most of the tile
   (:attr:`Measurement.area`), where they cover at least :data:`COVERAGE_MARGIN` times what the
   most confident reading's do: red cells cover much of a smear, the small objects a pass takes
   for them (platelets, parasites, granules) little, and the network can be as confident of
   those as of the real ones (:func:`best_reading`);
3. the tile at the estimated scale, unless a pass already run is close enough to it
   (:func:`keeps`). That pass is final: its own reading is not followed. On TXL-PBC val the
   shipped models read red cells within 1% of their labelled size from 32 to 48 model px (the
   median field's reading over its truth; 0.96-0.97 at 64 px, 1.03-1.04 at 26 px: ``python -m
   hemoscan_training.scale_readings``), so another pass gains nothing there; on the 100x oil
   Giemsa fields, whose pale red cells overlap, each smaller pass read them 8-25% larger than
   the one before, and following those readings took hemoscan-lite0-v5 from 0.233 to 0.185 on
   ``L19_M1_C4`` (its red cells give about 0.23).

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
import statistics
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hemoscan.datamodel import Detection, ScaleEstimate, TileResult
from hemoscan.inference.postprocess import box_iou

__all__ = [
    "Measurement",
    "Reading",
    "ScaleEstimate",
    "best_reading",
    "keeps",
    "measure",
    "most_confident",
    "probe_worth_rereading",
    "rereadings",
    "sample_consensus",
    "scale_summary",
    "trusted",
    "trusted_readings",
    "unclaimed_red_cells",
]  # fmt: skip

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
#: A pass is kept when the estimated scale is within these ratios of its scale: up to
#: :data:`KEEP_SMALLER_CELLS` where the pass saw red cells smaller than the model's (the estimate
#: asks to enlarge), up to :data:`KEEP_LARGER_CELLS` where it saw them larger. The network loses
#: more on small cells than on large ones: hemoscan-lite0-v5 on TXL-PBC val brought to red cells of
#: 32, 36, 40, 44 and 48 px (AP50 rbc / platelet): 0.913 / 0.772, 0.933 / 0.858, 0.943 / 0.872,
#: 0.952 / 0.866, 0.953 / 0.854. With one ratio of 1.33, hemoscan-lite0-v3 lost AP50 at native
#: resolution (rbc 0.903, platelet 0.780 against 0.922, 0.819 with 1.1); 1.05 gained nothing.
#: Keeping passes whose cells are up to 1.15x larger (was 1.1) spared a pass on 11 of 288 TXL-PBC
#: val fields and 8 of 59 held-out marrow fields at native resolution, every AP50 and count of the
#: native suites the same or better (platelet 0.877 against 0.874).
KEEP_SMALLER_CELLS = 1.1
KEEP_LARGER_CELLS = 1.15
#: Trusted red-cell readings of the scale-1 pass and the probe this far apart are read again,
#: each in a pass at its own scale (on the three Giemsa fields at 100x oil, the scale-1 pass
#: took platelets and parasites for red cells asking for 1.15-1.46x, the probe the real ones
#: for 0.24-0.27x, and on one field the scale-1 pass was the more confident).
AMBIGUOUS_RATIO = 2.0
MIN_RBC = 6
MIN_NUCLEATED = 3
#: The scale-1 pass settles a tile only if its red cells cover at least this fraction of it. At
#: 100x oil, the few platelets and parasites a pass takes for red cells of the model's size cover
#: under 1% (the three Giemsa fields: 0.7-0.9%); where the scale-1 pass settled a tile, its red
#: cells covered 12-70% of TXL-PBC dev fields at 40 px, segpc marrow and the example tiles, and
#: 3% of a lavage field.
MIN_SETTLING_COVERAGE = 0.02
#: Where two passes read different objects as red cells, the reading covering the most of the
#: tile wins over the most confident one only by this factor: look-alikes cover a small part of
#: what red cells do (on the three Giemsa fields, a fourteenth to a twentieth), while clusters of
#: small red cells, read as single cells by a shrunk pass, cover about as much as the cells (a
#: held-out segpc marrow field: 1.25x, where the most confident reading was the right one).
COVERAGE_MARGIN = 2.0
#: A pass's confidence is the mean score of its this many best-scoring cells.
CONFIDENCE_CELLS = 10
#: A free nucleated cell's diameter in red-cell diameters (blood ~2.0, lavage ~1.4, marrow ~1.5).
NUCLEATED_TO_RBC = 1.6
#: Red-cell sizes a pass measures reliably, in the model's red-cell diameters (22-62 px for a
#: 40 px model: about the 26-64 px it was trained on, the sizes it regresses towards at the ends).
TRUSTED_RANGE = (0.55, 1.55)
#: Tile estimates farther than this ratio from the sample's median are outliers.
OUTLIER_RATIO = 1.5


@dataclass(frozen=True)
class Measurement:
    """One pass's reading of a tile: the scale it implies (``estimate``), from which cells
    (``source``: ``auto-rbc`` or ``auto-nucleated``), their median diameter in input pixels
    (``cell_px``), how many (``cells``), the mean score of the best ten (``confidence``) and
    the area their boxes cover, input pixels squared (``area``)."""

    estimate: float
    source: str
    cell_px: float
    cells: int
    confidence: float
    area: float


def measure(detections: Sequence[Detection], rbc_diameter_px: float) -> Measurement | None:
    """The scale detections in one image's input pixels imply, from its red cells, else its
    nucleated cells; ``None`` when there are too few of both."""
    for label, minimum, source, factor in (
        ("rbc", MIN_RBC, "auto-rbc", 1.0),
        ("nucleated", MIN_NUCLEATED, "auto-nucleated", NUCLEATED_TO_RBC),
    ):
        cells = [d for d in detections if d.label == label]
        if len(cells) >= minimum:
            d = statistics.median([((c.x2 - c.x1) + (c.y2 - c.y1)) / 2 for c in cells])
            best = sorted((c.score for c in cells), reverse=True)[:CONFIDENCE_CELLS]
            area = sum((c.x2 - c.x1) * (c.y2 - c.y1) for c in cells)
            return Measurement(
                rbc_diameter_px * factor / d, source, d, len(cells), sum(best) / len(best), area
            )
    return None


def probe_worth_rereading(scale_one: Measurement | None, tile_px: float) -> bool:
    """Whether a probe that found too few cells to measure is read again below the
    thresholds: only where the scale-1 pass's own reading (``scale_one``, trusted, or ``None``)
    is red cells that ask for the tile to be shrunk while covering under
    :data:`MIN_SETTLING_COVERAGE` of its ``tile_px`` pixels: the few fragments or platelets a
    pass far below the tile's magnification takes for red cells (the Giemsa field
    ``L19_M1_C4`` at 100x oil: 6 of them over 0.4% of it, asking for 0.78 where its red cells
    give 0.24). Elsewhere a re-read only adds readings of cells the network is unsure of: on
    lavage and marrow fields those were leukocytes and clusters read as red cells, and settled
    fields at a third of their scale."""
    return (
        scale_one is not None
        and scale_one.source == "auto-rbc"
        and scale_one.estimate < 1 / KEEP_LARGER_CELLS
        and scale_one.area < MIN_SETTLING_COVERAGE * tile_px
    )


#: A red cell a blind probe's re-read finds is the scale-1 pass's nucleated cell or host (so
#: not a red cell) where their boxes overlap at least this much (IoU).
CLAIMED_IOU = 0.3
_CLAIMING_LABELS = ("nucleated", "macrophage", "hemophagocyte")


def unclaimed_red_cells(
    reread: Sequence[Detection], confident: Sequence[Detection]
) -> list[Detection]:
    """The red cells of a probe read again below the thresholds (``reread``) that the scale-1
    pass (``confident``, at the thresholds) did not call a nucleated cell or a host: unsure,
    a shrunk pass takes lavage leukocytes for red cells (on the held-out lavage fields with
    hemoscan-lite0-v3-fastbox, 16 µm cells read as red cells settled three fields at 0.55
    instead of 1.23), while at 100x oil it finds the real red cells the scale-1 pass never
    saw. Only red cells: a nucleated stand-in rests on a confident pass."""
    red = [d for d in reread if d.label == "rbc"]
    claims = [d for d in confident if d.label in _CLAIMING_LABELS]
    if not red or not claims:
        return red
    overlap = box_iou(_boxes(red), _boxes(claims))
    return [d for d, row in zip(red, overlap) if row.max() < CLAIMED_IOU]


def _boxes(detections: Sequence[Detection]) -> np.ndarray:
    return np.array([(d.x1, d.y1, d.x2, d.y2) for d in detections], np.float32)


def trusted(estimate: float, pass_scale: float) -> bool:
    """Whether a pass at ``pass_scale`` saw the cells at sizes it measures reliably: the red
    cells (or their nucleated stand-in) it measured, ``pass_scale / estimate`` model red-cell
    diameters across, lie in :data:`TRUSTED_RANGE`."""
    lo, hi = TRUSTED_RANGE
    return lo <= pass_scale / estimate <= hi


def keeps(pass_scale: float, estimate: float) -> bool:
    """Whether a pass at ``pass_scale`` is close enough to ``estimate`` to be kept: within
    :data:`KEEP_SMALLER_CELLS` above it, :data:`KEEP_LARGER_CELLS` below it."""
    return 1 / KEEP_LARGER_CELLS <= estimate / pass_scale <= KEEP_SMALLER_CELLS


#: A pass's reading of a tile: ``(pass scale, measurement)``.
Reading = tuple[float, Measurement]


def trusted_readings(
    passes: Iterable[tuple[float, Sequence[Detection]]], rbc_diameter_px: float
) -> list[Reading]:
    """The readings of the passes ``(pass scale, its detections in input pixels)`` that saw
    their cells at sizes the network measures reliably (:func:`trusted`)."""
    found = ((s, measure(dets, rbc_diameter_px)) for s, dets in passes)
    return [(s, m) for s, m in found if m and trusted(m.estimate, s)]


def most_confident(readings: Sequence[Reading]) -> Measurement | None:
    """Of trusted readings, the one whose cells the network is most confident of (red cells
    before nucleated ones; ties: the pass closest to its own estimate); ``None`` for none."""
    ranked = ((m.source != "auto-rbc", -m.confidence, abs(math.log(m.estimate / s)), m)
              for s, m in readings)  # fmt: skip
    return min(ranked, key=lambda r: r[:3])[3] if readings else None


def rereadings(readings: Sequence[Reading]) -> list[float]:
    """The red-cell estimates of the scale-1 pass and the probe (among ``readings``) when they
    are more than :data:`AMBIGUOUS_RATIO` apart: the two read different objects as red cells,
    and each deserves a pass at its own scale; else none."""
    rbc = [m.estimate for s, m in readings if s in (1.0, PROBE_SCALE) and m.source == "auto-rbc"]
    return rbc if len(rbc) == 2 and max(rbc) / min(rbc) > AMBIGUOUS_RATIO else []


def best_reading(readings: Sequence[Reading]) -> Measurement | None:
    """The reading a tile's scale rests on: the most confident (:func:`most_confident`), or,
    where the scale-1 pass and the probe read different objects as red cells
    (:func:`rereadings`), the red-cell reading whose cells cover the most of the tile if they
    cover at least :data:`COVERAGE_MARGIN` times what the most confident one's do."""
    confident = most_confident(readings)
    if confident is None or not rereadings(readings):
        return confident
    covering = max((m for _, m in readings if m.source == "auto-rbc"), key=lambda m: m.area)
    return covering if covering.area >= COVERAGE_MARGIN * confident.area else confident


def settled_at_scale_one(best: Measurement | None, tile_px: float) -> bool:
    """Whether the scale-1 pass's own measurement (the best trusted one, or ``None``) settles
    a tile of ``tile_px`` pixels: red cells, not their nucleated stand-in, put it close enough
    to 1 (:func:`keeps`), and cover at least :data:`MIN_SETTLING_COVERAGE` of it."""
    return (
        best is not None
        and best.source == "auto-rbc"
        and keeps(1.0, best.estimate)
        and best.area >= MIN_SETTLING_COVERAGE * tile_px
    )


def sample_consensus(estimates: Iterable[float]) -> float | None:
    """A sample's scale from its tiles' own estimates: the median (in log scale) of those within
    :data:`OUTLIER_RATIO` of the overall median; ``None`` without any estimate."""
    logs = [math.log(e) for e in estimates if e > 0 and math.isfinite(e)]
    if not logs:
        return None
    centre = statistics.median(logs)
    inliers = [v for v in logs if abs(v - centre) <= math.log(OUTLIER_RATIO)]
    return math.exp(statistics.median(inliers))


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
        spread = None
        if values:
            spread = {"min": values[0], "median": statistics.median(values), "max": values[-1]}
        out[sample] = {
            "consensus": None if consensus is None else round(consensus, 4),
            "estimates": spread and {k: round(v, 4) for k, v in spread.items()},
            "tiles_by_source": {s: counts[s] for s in SCALE_SOURCES if counts[s]},
        }
    return out
