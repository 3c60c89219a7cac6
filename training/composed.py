"""Fixed sets of COMPOSED fields (real parts, synthetic hemophagocytes) as annotation records.

:class:`ComposedSet` draws fields ``0 .. n-1`` of :class:`~hemoscan_training.data.ComposedCrops`
(the training composer, unchanged) for one ``part`` and ``seed`` and turns each into the
image and an :class:`~hemoscan.annotations.AnnotatedImage`: boxes ``x1, y1, x2, y2`` pixels of
the composed field (origin top-left), hemoscan class names, every engulfed cell linked to the
hemophagocyte holding it. The generator does not return that link; it is restored by
containment (:func:`hemoscan.annotations.infer_parents`: the smallest hemophagocyte box holding
the engulfed cell's centre), which is how hemoscan's own COCO reader links them too.

- ``part="val"``: only parts training never sees (TXL-PBC val fields and cells, the held-out
  segpc fields, the held-out Giemsa host); report on it.
- ``part="train"`` with a seed other than the training run's: training parts (backgrounds and
  cells the model has seen) in new arrangements; a *dev* set for tuning thresholds.

Fields on a marrow background label only plasma cells as ``nucleated`` (positives only), so
``rbc``, ``platelet`` and ``nucleated`` are not supervised there; on a TXL-PBC background every
class is. Every figure measured on these fields is a figure on composed data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hemoscan.annotations import AnnotatedImage, infer_parents

from .config import ComposerSection
from .data import ComposedCrops
from .splits import CLASSES, UNSUPERVISED

#: Seeds of the fixed composed sets (the training runs use seed 0).
VAL_SEED = 20260
DEV_SEED = 31337
#: The classes each background supervises (its boxes are complete for them).
SUPERVISED = {
    background: frozenset(c for i, c in enumerate(CLASSES) if i not in unsupervised)
    for background, unsupervised in UNSUPERVISED.items()
}


@dataclass(frozen=True)
class ComposedField:
    """One composed field: ``image`` HWC uint8 RGB, its ``record`` and its background."""

    index: int
    image: np.ndarray
    record: AnnotatedImage
    background: str  # "txl-pbc", "segpc-marrow" or "bal-macrophages"


class ComposedSet:
    """Fields ``0 .. n-1`` of ``ComposedCrops(data_root, crop, seed, part, recipe)``, drawn on
    demand (``recipe``: how hosts are drawn; default v2's, which the fixed sets keep).

    Field ``i`` is the same on every machine and run (the generator is seeded per index).
    """

    def __init__(
        self,
        data_root: Path,
        part: str,
        seed: int,
        n: int,
        crop: int = 512,
        recipe: ComposerSection = ComposerSection(),
    ) -> None:
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        self.data_root, self.part, self.seed, self.n, self.crop = (
            Path(data_root),
            part,
            seed,
            n,
            crop,
        )
        self._crops = ComposedCrops(self.data_root, crop=crop, seed=seed, part=part, recipe=recipe)

    def __len__(self) -> int:
        return self.n

    def name(self, index: int) -> str:
        return f"composed-{self.part}-s{self.seed}-{index:05d}"

    def field(self, index: int) -> ComposedField:
        if not 0 <= index < self.n:
            raise IndexError(f"field {index} of a composed set of {self.n}")
        image, boxes, background = self._crops.compose(index)
        labels = tuple(CLASSES[int(c)] for c in boxes[:, 4])
        parents = infer_parents(boxes[:, :4], labels, [-1] * len(labels))
        h, w = image.shape[:2]
        record = AnnotatedImage(
            image_path=Path(f"{self.name(index)}.png"),
            width=w,
            height=h,
            boxes=boxes[:, :4],
            labels=labels,
            parents=parents,
            ignore=np.zeros((0, 4), np.float32),
            supervised=SUPERVISED[background],
        )
        record, _ = record.checked()
        return ComposedField(index, image, record, background)
