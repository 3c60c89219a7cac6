"""Per-sample findings from per-tile results.

``nucleated_cells_assessed`` is every nucleated cell found (free nucleated cells, macrophages
and hemophagocytes); cells engulfed by a hemophagocyte are not counted again. It is the
denominator of ``hemophagocytes_per_1000_nucleated``, which is ``None`` when it is zero.
"""

from __future__ import annotations

from collections.abc import Iterable

from hemoscan.datamodel import (
    CELL_CLASSES,
    ENGULFED_TYPES,
    NUCLEATED_CLASSES,
    Detection,
    Provenance,
    SampleFindings,
)


class SampleAccumulator:
    """Streams tiles and detections of one sample into counts; memory does not grow with them."""

    def __init__(self, sample: str) -> None:
        self.sample = sample
        self.counts = dict.fromkeys(CELL_CLASSES, 0)
        self.by_engulfed = dict.fromkeys(ENGULFED_TYPES, 0)
        self.engulfed_total = dict.fromkeys(ENGULFED_TYPES, 0)
        self.ge2_nucleated = 0
        self.tiles_scanned = 0
        self.tiles_failed = 0

    def add_tile(self, ok: bool) -> None:
        self.tiles_scanned += 1
        self.tiles_failed += 0 if ok else 1

    def add_detection(self, det: Detection) -> None:
        self.counts[det.label] = self.counts.get(det.label, 0) + 1
        engulfed = det.engulfed
        if not engulfed:
            return
        for kind, n in engulfed.items():
            self.engulfed_total[kind] = self.engulfed_total.get(kind, 0) + n
            self.by_engulfed[kind] = self.by_engulfed.get(kind, 0) + (1 if n else 0)
        if engulfed.get("nucleated", 0) >= 2:
            self.ge2_nucleated += 1

    def findings(self, provenance: Provenance | None = None) -> SampleFindings:
        nucleated = sum(self.counts[c] for c in NUCLEATED_CLASSES)
        hemophagocytes = self.counts["hemophagocyte"]
        return SampleFindings(
            sample=self.sample,
            counts=dict(self.counts),
            nucleated_cells_assessed=nucleated,
            hemophagocytes_per_1000_nucleated=(
                round(1000 * hemophagocytes / nucleated, 3) if nucleated else None
            ),
            hemophagocytes_by_engulfed=dict(self.by_engulfed),
            engulfed_cells_total=dict(self.engulfed_total),
            hemophagocytes_with_ge2_nucleated=self.ge2_nucleated,
            macrophages=self.counts["macrophage"],
            tiles_scanned=self.tiles_scanned,
            tiles_failed=self.tiles_failed,
            provenance=provenance,
        )


def aggregate(
    tiles: Iterable[tuple[str, bool]],
    detections: Iterable[tuple[str, Detection]],
    provenance: Provenance | None = None,
) -> list[SampleFindings]:
    """Findings per sample, in order of first appearance.

    ``tiles`` yields ``(sample, ok)`` per tile; ``detections`` yields ``(sample, detection)``.
    """
    samples: dict[str, SampleAccumulator] = {}
    for sample, ok in tiles:
        samples.setdefault(sample, SampleAccumulator(sample)).add_tile(ok)
    for sample, det in detections:
        samples.setdefault(sample, SampleAccumulator(sample)).add_detection(det)
    return [acc.findings(provenance) for acc in samples.values()]
