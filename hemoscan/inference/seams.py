"""One count per cell across the seams between the regions of a whole-slide image.

Each region keeps the cells whose centre lies in its core (:mod:`hemoscan.io.regions`). Two
neighbouring regions see a cell on their seam from two windows and may give it two slightly
different boxes whose centres fall on either side of the seam: both would be kept. So a
region's cells are compared with the cells admitted from earlier regions of the same slide
that lay near their region's core edge (only those can lie on a seam): a cell of the same kind (:func:`~hemoscan.inference.postprocess.nms_group`) whose box overlaps an admitted
one by more than :data:`SEAM_IOS` of the smaller box is the same cell, and the earlier
region's call stands. Regions are admitted in scan order, so the outcome is deterministic;
a resumed scan first :meth:`SeamSuppressor.remember`\\ s the finished regions' cells.
Boxes are level-0 slide pixels.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from hemoscan.datamodel import Detection
from hemoscan.inference.postprocess import nms_group

#: Intersection over the smaller box above which two cells on a seam are one.
SEAM_IOS = 0.5

Core = tuple[float, float, float, float]  # x0, y0, x1, y1, level-0 pixels


def _near_edge(det: Detection, core: Core) -> bool:
    """Whether the box, grown by half its size on every side, reaches beyond the core: a
    neighbour may have seen the cell too, with a box shifted by up to half the cell."""
    x0, y0, x1, y1 = core
    gx, gy = (det.x2 - det.x1) / 2, (det.y2 - det.y1) / 2
    return det.x1 - gx < x0 or det.y1 - gy < y0 or det.x2 + gx > x1 or det.y2 + gy > y1


class SeamSuppressor:
    """Admits each region's detections once duplicates of an earlier region's cells are gone.

    Memory: the cells near their region's core edge, of the regions not yet passed (a stored
    cell is dropped once the scan's regions lie wholly below it).
    """

    def __init__(self) -> None:
        self._edge_cells: dict[str, tuple[np.ndarray, list[str]]] = {}

    def admit(self, slide: str, core: Core, detections: Iterable[Detection]) -> tuple[Detection, ...]:
        """``detections`` of the region of ``slide`` whose core is ``core``, less those that
        repeat a cell an earlier region already counted."""
        boxes, groups = self._edge_cells.get(slide, (np.zeros((0, 4)), []))
        alive = boxes[:, 3] >= core[1]  # regions come in row order: cells above are passed
        boxes, groups = boxes[alive], [g for g, a in zip(groups, alive) if a]
        self._edge_cells[slide] = (boxes, groups)
        group_ids = np.array(groups)
        areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
        kept = []
        for det in detections:
            if len(boxes):
                w = np.minimum(det.x2, boxes[:, 2]) - np.maximum(det.x1, boxes[:, 0])
                h = np.minimum(det.y2, boxes[:, 3]) - np.maximum(det.y1, boxes[:, 1])
                inter = np.clip(w, 0, None) * np.clip(h, 0, None)
                smaller = np.minimum((det.x2 - det.x1) * (det.y2 - det.y1), areas)
                same = group_ids == nms_group(det.label)
                if np.any(same & (inter > SEAM_IOS * np.maximum(smaller, 1e-9))):
                    continue
            kept.append(det)
        self.remember(slide, core, kept)
        return tuple(kept)

    def remember(self, slide: str, core: Core, detections: Iterable[Detection]) -> None:
        """Record a region's admitted ``detections`` (e.g. of a region finished by an earlier
        run of a resumed scan) for the comparisons of later regions."""
        edge = [d for d in detections if _near_edge(d, core)]
        if not edge:
            return
        boxes, groups = self._edge_cells.get(slide, (np.zeros((0, 4)), []))
        new = np.array([[d.x1, d.y1, d.x2, d.y2] for d in edge], np.float64)
        self._edge_cells[slide] = (
            np.concatenate([boxes, new]),
            groups + [nms_group(d.label) for d in edge],
        )
