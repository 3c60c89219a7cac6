"""The common record every dataset reader produces: one :class:`AnnotatedImage` per image.

Coordinate convention (the same as :mod:`hemoscan.datamodel`): boxes are ``x1, y1, x2, y2``
float pixels of the image as stored on disk (EXIF orientation not applied), origin at the
top-left *corner* of the top-left pixel, x to the right, y down. Pixel ``(col, row)`` covers
``[col, col + 1) x [row, row + 1)``, so a box exactly around one pixel is
``(col, row, col + 1, row + 1)`` and a box of the whole image is ``(0, 0, width, height)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from hemoscan.datamodel import CELL_CLASSES, ENGULFED_PREFIX, ENGULFED_TYPES
from hemoscan.errors import HemoscanError

#: Engulfed-cell classes: ``engulfed_<type>`` for every :data:`~hemoscan.datamodel.ENGULFED_TYPES`.
ENGULFED_CLASSES: tuple[str, ...] = tuple(ENGULFED_PREFIX + t for t in ENGULFED_TYPES)
#: Every class an annotation may carry after class mapping.
ANNOTATION_CLASSES: tuple[str, ...] = (*CELL_CLASSES, *ENGULFED_CLASSES)
#: The class that hosts engulfed cells (the only valid target of a ``parents`` index).
HOST_CLASS = "hemophagocyte"
#: ``class_map`` targets that are not classes: an ignore region, or nothing at all.
IGNORE = "ignore"
DROP = "drop"

#: Boxes that stick out of the image by at most this many pixels are clipped silently
#: (rounding in normalised or 1-based sources); beyond it they are clipped with a warning.
CLIP_TOLERANCE_PX = 1.0


class AnnotationError(HemoscanError):
    """An annotation file or dataset spec is unusable; the message names the file and problem."""


class AnnotationWarning(UserWarning):
    """Something in a dataset was skipped, clipped or assumed; training can still go on."""


def is_engulfed(label: str) -> bool:
    return label.startswith(ENGULFED_PREFIX)


def _as_boxes(value: Any, what: str, where: str) -> np.ndarray:
    arr = np.array(value, dtype=np.float32, copy=True)
    if arr.size == 0:
        arr = arr.reshape(0, 4)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise AnnotationError(f"{where}: {what} must have shape [N, 4], got {arr.shape}")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class AnnotatedImage:
    """One annotated image, classes already mapped to hemoscan's.

    ``boxes``: float32 ``[N, 4]`` ``x1, y1, x2, y2`` pixels (see the module docstring).
    ``labels``: ``N`` classes from :data:`ANNOTATION_CLASSES`.
    ``parents``: ``N`` ints; for an ``engulfed_*`` box the index of its host
    (``hemophagocyte``) box, or ``-1`` when unknown; ``-1`` for every other box.
    ``ignore``: float32 ``[M, 4]`` regions where no class is supervised: predictions there are
    neither rewarded nor penalised.
    ``supervised``: classes whose *absence* is meaningful in this image: outside boxes and
    ignore regions, no object of such a class exists, so the detector may be taught
    background there. A class not in it is positives-only (its boxes are true, but an
    unlabelled cell of that class may be anywhere).
    ``source``: the annotation file it was read from, for messages (``None`` if none).

    Arrays are read-only copies; construct new records with :meth:`subset` or
    :func:`dataclasses.replace`. Construction checks shapes and lengths only; call
    :meth:`validate` for the content checks.
    """

    image_path: Path
    width: int
    height: int
    boxes: np.ndarray
    labels: tuple[str, ...]
    parents: tuple[int, ...]
    ignore: np.ndarray
    supervised: frozenset[str]
    source: Path | None = field(default=None)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "image_path", Path(self.image_path))
        set_(self, "width", int(self.width))
        set_(self, "height", int(self.height))
        where = self.where
        set_(self, "boxes", _as_boxes(self.boxes, "boxes", where))
        set_(self, "ignore", _as_boxes(self.ignore, "ignore", where))
        set_(self, "labels", tuple(str(x) for x in self.labels))
        set_(self, "parents", tuple(int(p) for p in self.parents))
        set_(self, "supervised", frozenset(self.supervised))
        n = len(self.boxes)
        if len(self.labels) != n or len(self.parents) != n:
            raise AnnotationError(
                f"{where}: {n} boxes but {len(self.labels)} labels and {len(self.parents)} parents"
            )

    @property
    def where(self) -> str:
        """The file to name in messages: the annotation file, else the image."""
        return str(self.source if self.source is not None else self.image_path)

    def __len__(self) -> int:
        return len(self.labels)

    def __repr__(self) -> str:
        return (
            f"AnnotatedImage({str(self.image_path)!r}, {self.width}x{self.height}, "
            f"{len(self)} boxes, {len(self.ignore)} ignore, supervised={sorted(self.supervised)})"
        )

    # ------------------------------------------------------------------ queries
    def counts(self) -> dict[str, int]:
        """Number of boxes per label (only labels present)."""
        out: dict[str, int] = {}
        for label in self.labels:
            out[label] = out.get(label, 0) + 1
        return out

    def label_indices(self, classes: Sequence[str]) -> np.ndarray:
        """int64 ``[N]`` index of each label in ``classes`` (a model's class order)."""
        index = {c: i for i, c in enumerate(classes)}
        missing = sorted(set(self.labels) - set(index))
        if missing:
            raise AnnotationError(
                f"{self.where}: labels {missing} are not in classes {tuple(classes)}"
            )
        return np.array([index[x] for x in self.labels], dtype=np.int64)

    def supervised_mask(self, classes: Sequence[str]) -> np.ndarray:
        """bool ``[len(classes)]``: whether negatives of each class are taught in this image."""
        return np.array([c in self.supervised for c in classes], dtype=bool)

    # ------------------------------------------------------------------ derived records
    def subset(self, keep: np.ndarray | Sequence[int] | Sequence[bool]) -> AnnotatedImage:
        """A record with only the boxes selected by ``keep`` (bool mask or indices, in order).

        Parent indices are renumbered; an engulfed box whose host is removed gets ``-1``.
        Ignore regions and everything else are kept.
        """
        k = np.asarray(keep)
        idx = np.flatnonzero(k) if k.dtype == bool else k.astype(np.int64).reshape(-1)
        if k.dtype == bool and len(k) != len(self):
            raise AnnotationError(
                f"{self.where}: subset mask has {len(k)} entries for {len(self)} boxes"
            )
        new_of_old = {int(old): new for new, old in enumerate(idx)}
        parents = tuple(
            new_of_old.get(self.parents[old], -1) if self.parents[old] >= 0 else -1 for old in idx
        )
        return replace(
            self,
            boxes=self.boxes[idx],
            labels=tuple(self.labels[i] for i in idx),
            parents=parents,
        )

    def validate(self, tolerance: float = CLIP_TOLERANCE_PX) -> AnnotatedImage:
        """Check the content and return the record to use, clipped to the image.

        Raises :class:`AnnotationError` for: a non-positive image size, an unknown label or
        supervised class, a non-finite box, a box with ``x2 <= x1`` or ``y2 <= y1``, or a parent
        index that is out of range, set on a non-engulfed box or points at a non-host box.
        Boxes and ignore regions are clipped to ``[0, width] x [0, height]``; if any stuck out by
        more than ``tolerance`` pixels, or lay wholly outside the image (they are removed),
        an :class:`AnnotationWarning` names the file.
        """
        record, notes = self.checked(tolerance)
        for note in notes:
            warnings.warn(f"{self.where}: {note}", AnnotationWarning, stacklevel=2)
        return record

    def checked(self, tolerance: float = CLIP_TOLERANCE_PX) -> tuple[AnnotatedImage, list[str]]:
        """:meth:`validate` without warning: returns the record and the notes it would warn."""
        where = self.where
        if self.width <= 0 or self.height <= 0:
            raise AnnotationError(f"{where}: image size {self.width}x{self.height} is not positive")
        unknown = sorted(set(self.labels) - set(ANNOTATION_CLASSES))
        if unknown:
            raise AnnotationError(
                f"{where}: unknown labels {unknown}; hemoscan classes are {ANNOTATION_CLASSES}"
            )
        unknown = sorted(self.supervised - set(ANNOTATION_CLASSES))
        if unknown:
            raise AnnotationError(f"{where}: unknown supervised classes {unknown}")
        n = len(self)
        for i, p in enumerate(self.parents):
            if p == -1:
                continue
            if not is_engulfed(self.labels[i]):
                raise AnnotationError(
                    f"{where}: box {i} ({self.labels[i]}) has a parent but is not engulfed_*"
                )
            if not 0 <= p < n or self.labels[p] != HOST_CLASS:
                raise AnnotationError(
                    f"{where}: box {i} ({self.labels[i]}) has parent {p}, "
                    f"which is not a {HOST_CLASS} box"
                )
        for what, arr in (("box", self.boxes), ("ignore region", self.ignore)):
            if not np.isfinite(arr).all():
                i = int(np.flatnonzero(~np.isfinite(arr).all(1))[0])
                raise AnnotationError(
                    f"{where}: {what} {i} has a non-finite coordinate {arr[i].tolist()}"
                )
            bad = (arr[:, 2] <= arr[:, 0]) | (arr[:, 3] <= arr[:, 1])
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                label = f" ({self.labels[i]})" if what == "box" else ""
                raise AnnotationError(
                    f"{where}: {what} {i}{label} {arr[i].tolist()} is empty or inverted "
                    f"(need x2 > x1 and y2 > y1); {int(bad.sum())} such in this file"
                )
        notes: list[str] = []
        limit = np.array([self.width, self.height, self.width, self.height], np.float32)
        boxes, out_b, far_b = _clip(self.boxes, limit, tolerance)
        ignore, out_i, far_i = _clip(self.ignore, limit, tolerance)
        if far_b.any() or far_i.any():
            notes.append(
                f"{int(far_b.sum())} boxes and {int(far_i.sum())} ignore regions extend beyond the "
                f"{self.width}x{self.height} image by more than {tolerance:g} px; clipped"
            )
        if out_b.any() or out_i.any():
            notes.append(
                f"{int(out_b.sum())} boxes and {int(out_i.sum())} ignore regions lie wholly "
                f"outside the {self.width}x{self.height} image; removed"
            )
        record = replace(self, boxes=boxes, ignore=ignore[~out_i])
        if out_b.any():
            record = record.subset(~out_b)
        return record, notes

    # ------------------------------------------------------------------ JSON form
    def to_dict(self) -> dict[str, Any]:
        return {
            "image_path": str(self.image_path),
            "width": self.width,
            "height": self.height,
            "boxes": self.boxes.tolist(),
            "labels": list(self.labels),
            "parents": list(self.parents),
            "ignore": self.ignore.tolist(),
            "supervised": sorted(self.supervised),
            "source": None if self.source is None else str(self.source),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AnnotatedImage:
        src = d.get("source")
        return cls(
            image_path=Path(d["image_path"]),
            width=d["width"],
            height=d["height"],
            boxes=d["boxes"],
            labels=tuple(d["labels"]),
            parents=tuple(d["parents"]),
            ignore=d["ignore"],
            supervised=frozenset(d["supervised"]),
            source=None if src is None else Path(src),
        )


def _clip(
    arr: np.ndarray, limit: np.ndarray, tol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clipped copy, mask of rows wholly outside, mask of rows sticking out by more than ``tol``."""
    clipped = np.clip(arr, 0, limit).astype(np.float32)
    outside = (clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1])
    excess = np.maximum(-arr, arr - limit).max(axis=1) if len(arr) else np.zeros(0, np.float32)
    return clipped, outside, (excess > tol) & ~outside


def infer_parents(
    boxes: np.ndarray,
    labels: Sequence[str],
    parents: Iterable[int],
    contains: Callable[[int, float, float], bool] | None = None,
) -> tuple[int, ...]:
    """Fill in the host of every ``engulfed_*`` box whose parent is ``-1``.

    The host is a ``hemophagocyte`` that contains the engulfed box's centre: by default its box
    contains it (inclusive), or ``contains(host_index, cx, cy)`` says so (e.g. a polygon test).
    When several do, the one with the smallest box area wins. Explicit parents are kept.
    """
    out = list(parents)
    hosts = [j for j, lab in enumerate(labels) if lab == HOST_CLASS]
    if not hosts:
        return tuple(out)
    area = {j: float((boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1])) for j in hosts}
    for i, lab in enumerate(labels):
        if out[i] != -1 or not is_engulfed(lab):
            continue
        cx, cy = float(boxes[i, 0] + boxes[i, 2]) / 2, float(boxes[i, 1] + boxes[i, 3]) / 2
        inside = [
            j
            for j in hosts
            if (
                contains(j, cx, cy)
                if contains is not None
                else boxes[j, 0] <= cx <= boxes[j, 2] and boxes[j, 1] <= cy <= boxes[j, 3]
            )
        ]
        if inside:
            out[i] = min(inside, key=area.__getitem__)
    return tuple(out)
