"""The named suites over the public sets: fields to predict, with their truth and scale.

See :mod:`hemoscan_training.evaluate` for what each suite is. A field is loaded lazily
(``EvalField.load``), so a suite of hundreds of fields costs nothing until it is run.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from hemoscan.annotations import AnnotatedImage
from hemoscan.inference.backends import AnyModel
from hemoscan.inference.scale import AUTO
from hemoscan.io.images import read_tile

from ..composed import ComposedSet
from ..config import ComposerSection
from ..splits import (
    BAL_MPP,
    CLASSES,
    HELDOUT_BAL_SLIDES,
    MAX_PLASMA_CELL_RBC,
    RBC_UM,
    SEGPC_RBC_PX,
    bal_part,
    marrow_part,
    txl_part,
)
from .common import COMPOSED_CROP, COMPOSED_SAMPLE_FIELDS, FREE_CLASSES, EvaluationError


@dataclass(frozen=True)
class EvalField:
    """One field of a suite: ``load()`` returns the HWC uint8 RGB image and its truth record;
    ``scale`` is the resize factor given to the predictor, or ``"auto"`` (the field's own
    estimate); ``sample`` groups fields for the count agreement; ``oracle_scale``, where
    known, the factor that brings the field's red cells to the model's ``rbc_diameter_px``
    (from the labels or the pixel size), the reference for an ``"auto"`` scale."""

    name: str
    sample: str
    scale: float | Literal["auto"]
    load: Callable[[], tuple[np.ndarray, AnnotatedImage]]
    oracle_scale: float | None = None


@dataclass(frozen=True)
class Suite:
    """A named set of fields. ``data`` says whether the images are real or composed;
    ``tune_classes``: the classes this suite may tune (None: all it labels); ``recall_only``:
    positives-only classes (not supervised: other objects of the class are unlabelled) whose
    recall is measured all the same; their precision and AP cannot be."""

    name: str
    data: Literal["real", "composed"]
    description: str
    scale_note: str
    fields: Sequence[EvalField]
    has_truth: bool = True
    tune_classes: frozenset[str] | None = None
    recall_only: frozenset[str] = frozenset()


#: The median red cell, in pixels, of the ``txl-val-scanner`` suite: a 40x slide scanner's.
SCANNER_RBC_PX = 32.0


def txl_suite(
    model: AnyModel,
    data_root: Path,
    part: str,
    limit: int | None,
    native: bool = False,
    resampled_rbc_px: float | None = None,
) -> Suite:
    """TXL-PBC ``val`` (real, reported) or ``dev`` (tuning) fields at the oracle scale, or
    with ``native`` at their own resolution, scale auto (the oracle kept as the reference);
    ``resampled_rbc_px`` first resamples each field (and its boxes) so its median labelled red
    cell is that many pixels (another magnification of the same fields)."""
    root = data_root / "txl-pbc"
    if not (root / "images").is_dir():
        raise EvaluationError(f"TXL-PBC not found at {root} (set --data-root)")
    items = txl_part(root, part)[:limit]
    rbc_px = model.config.rbc_diameter_px
    supervised = frozenset(FREE_CLASSES)

    def factor(item: Any) -> float:
        return 1.0 if resampled_rbc_px is None else resampled_rbc_px / item.rbc_diameter

    def loader(item: Any) -> Callable[[], tuple[np.ndarray, AnnotatedImage]]:
        def load() -> tuple[np.ndarray, AnnotatedImage]:
            image = read_tile(item.path)
            f = factor(item)
            if f != 1.0:
                interpolation = cv2.INTER_AREA if f < 1 else cv2.INTER_CUBIC
                image = cv2.resize(image, None, fx=f, fy=f, interpolation=interpolation)
            labels = tuple(CLASSES[int(c)] for c in item.boxes[:, 4])
            record = AnnotatedImage(
                item.path,
                image.shape[1],
                image.shape[0],
                item.boxes[:, :4] * f,
                labels,
                [-1] * len(labels),
                np.zeros((0, 4)),
                supervised,
            )
            return image, record.checked()[0]

        return load

    fields = [
        EvalField(
            it.path.stem,
            it.path.stem,
            AUTO if native else rbc_px / it.rbc_diameter,
            loader(it),
            oracle_scale=rbc_px / (it.rbc_diameter * factor(it)),
        )
        for it in items
    ]
    name = f"txl-{part}" + ("-native" if native else "")
    what = "validation split, never trained on" if part == "val" else "dev fields (tuning only)"
    if resampled_rbc_px is not None:
        name = f"txl-{part}-scanner"
        what += f", resampled to {resampled_rbc_px:g} px red cells (a 40x scanner)"
    elif native:
        what += ", at native resolution"
    if native:
        note = (
            f"auto: each field's own estimate, as `hemoscan scan` does; oracle for reference: "
            f"the scale bringing its median labelled red cell to {rbc_px:g} px"
        )
    else:
        note = (
            f"oracle: each field rescaled so its median labelled red cell is {rbc_px:g} px "
            "(from the labels; a user sets --scale)"
        )
    return Suite(
        name=name,
        data="real",
        description=f"TXL-PBC {what}: real peripheral-blood fields, WBC as nucleated",
        scale_note=note,
        fields=fields,
        tune_classes=frozenset(FREE_CLASSES),
    )


def segpc_plasma_cells(mask: np.ndarray) -> np.ndarray:
    """float32 ``[N, 4]`` boxes (x1, y1, x2, y2 px of the field) of the plasma cells of a segpc
    mask (HW uint8, cells > 127): its connected components of >= 100 px, less the clusters of
    touching cells (longer side over ``MAX_PLASMA_CELL_RBC`` red cells, or elongated), as
    :meth:`hemoscan_training.data.ComposedCrops.compose` takes them for training."""
    _, _, stats, _ = cv2.connectedComponentsWithStats((mask > 127).astype(np.uint8))
    comp = stats[1:][stats[1:, cv2.CC_STAT_AREA] >= 100]
    side, short = comp[:, 2:4].max(1), comp[:, 2:4].min(1)
    comp = comp[(side <= MAX_PLASMA_CELL_RBC * SEGPC_RBC_PX) & (side <= 1.7 * short)]
    x, y, w, h = (comp[:, k].astype(np.float32) for k in range(4))
    return np.stack([x, y, x + w, y + h], 1).reshape(-1, 4)


def segpc_suite(
    model: AnyModel, data_root: Path, limit: int | None, native: bool = False
) -> Suite:
    """The held-out segpc marrow fields: calls per 100 fields only (no usable truth) at a
    fixed scale; with ``native``, at their own resolution, scale auto, and the masks' plasma
    cells (:func:`segpc_plasma_cells`) as positives-only ``nucleated`` truth (their recall)."""
    root = data_root / "segpc-marrow"
    if not (root / "images").is_dir():
        raise EvaluationError(f"segpc-marrow not found at {root} (set --data-root)")
    paths = marrow_part(root, "heldout")[:limit]
    scale = model.config.rbc_diameter_px / SEGPC_RBC_PX

    def loader(path: Path) -> Callable[[], tuple[np.ndarray, AnnotatedImage]]:
        def load() -> tuple[np.ndarray, AnnotatedImage]:
            image = read_tile(path)
            boxes = np.zeros((0, 4), np.float32)
            if native:
                mask_path = root / "masks" / path.name
                mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE)
                if mask is None:
                    raise EvaluationError(f"{mask_path}: the plasma-cell mask cannot be read")
                boxes = segpc_plasma_cells(mask)
            n = len(boxes)
            return image, AnnotatedImage(path, image.shape[1], image.shape[0], boxes,
                                         ("nucleated",) * n, (-1,) * n, np.zeros((0, 4)),
                                         frozenset())  # fmt: skip

        return load

    what = (
        "segpc-marrow held-out fields (every 5th, never trained on by runs using the "
        "hemoscan_training splits): real myeloma marrow, hemophagocytes rare, so "
        "hemophagocyte calls are mostly false alarms"
    )
    if native:
        return Suite(
            name="segpc-heldout-native",
            data="real",
            description=(
                f"{what}; at native resolution, the masks' plasma cells (touching-cell "
                "clusters left out) as positives-only nucleated truth: nucleated recall is "
                "plasma-cell recall"
            ),
            scale_note="auto: each field's own estimate, as `hemoscan scan` does",
            fields=[EvalField(p.stem, p.stem, AUTO, loader(p)) for p in paths],
            recall_only=frozenset({"nucleated"}),
        )
    return Suite(
        name="segpc-heldout",
        data="real",
        description=what,
        scale_note=f"fixed {scale:.3g} (red cells about {SEGPC_RBC_PX:g} px -> {model.config.rbc_diameter_px:g} px)",
        fields=[EvalField(p.stem, p.stem, scale, loader(p)) for p in paths],
        has_truth=False,
    )


def bal_suite(model: AnyModel, data_root: Path, limit: int | None) -> Suite:
    """The bal-macrophages patches of the held-out lavage slides at native resolution, scale
    auto: macrophage and nucleated truth, hemophagocytes supervised as absent."""
    root = data_root / "bal-macrophages"
    if not (root / "annotations.json").is_file():
        raise EvaluationError(f"bal-macrophages not found at {root} (set --data-root)")
    items = bal_part(root, "heldout")[:limit]
    rbc_px = model.config.rbc_diameter_px
    oracle = rbc_px / (RBC_UM / BAL_MPP)  # a red cell of RBC_UM µm brought to rbc_px
    # every leukocyte is boxed; red cells and platelets are not (few in lavage)
    supervised = frozenset({"nucleated", "macrophage", "hemophagocyte"})

    def loader(item: Any) -> Callable[[], tuple[np.ndarray, AnnotatedImage]]:
        def load() -> tuple[np.ndarray, AnnotatedImage]:
            image = read_tile(item.path)
            labels = tuple(CLASSES[int(c)] for c in item.boxes[:, 4])
            return image, AnnotatedImage(item.path, image.shape[1], image.shape[0],
                                         item.boxes[:, :4], labels, (-1,) * len(labels),
                                         np.zeros((0, 4)), supervised)  # fmt: skip

        return load

    return Suite(
        name="bal-heldout",
        data="real",
        description=(
            "bal-macrophages patches of the held-out lavage slides "
            f"({', '.join(HELDOUT_BAL_SLIDES)}; never trained on) at native resolution: real "
            "equine lavage macrophages beside other leukocytes (nucleated); no hemophagocytes, "
            "so every hemophagocyte call is false"
        ),
        scale_note=(
            f"auto: each field's own estimate, as `hemoscan scan` does; oracle for reference: "
            f"{oracle:.3g} (a {RBC_UM:g} µm red cell at {BAL_MPP:g} µm/px -> {rbc_px:g} px)"
        ),
        fields=[EvalField(it.path.stem, it.slide, AUTO, loader(it), oracle) for it in items],
    )


def composed_suite(
    data_root: Path,
    part: Literal["val", "train"],
    seed: int,
    n: int,
    crop: int = COMPOSED_CROP,
    sample_fields: int = COMPOSED_SAMPLE_FIELDS,
    hosts: Literal["mixed", "real", "procedural"] = "mixed",
) -> Suite:
    """``n`` fixed composed fields: ``part="val"`` held-apart parts (reported as
    ``composed-val``), ``part="train"`` training parts with another seed (``composed-dev``).
    ``hosts``: the recipe's mix of real Giemsa and procedural hosts (``"mixed"``), or the same
    fields with every host the real Giemsa macrophage(s) of ``part`` (``"real"``,
    ``composed-val-real-host``: the held-out one) or procedural (``"procedural"``,
    ``composed-val-procedural-host``), which tells the two kinds' share of the mixed figures
    apart."""
    if not (data_root / "txl-pbc").is_dir():
        raise EvaluationError(f"the public sets were not found at {data_root} (set --data-root)")
    recipe = {"mixed": ComposerSection(), "real": ComposerSection(p_real_host=1.0),
              "procedural": ComposerSection(p_real_host=0.0)}[hosts]  # fmt: skip
    fields_set = ComposedSet(data_root, part, seed, n, crop, recipe)

    def loader(i: int) -> Callable[[], tuple[np.ndarray, AnnotatedImage]]:
        def load() -> tuple[np.ndarray, AnnotatedImage]:
            f = fields_set.field(i)
            return f.image, f.record

        return load

    fields = [
        EvalField(fields_set.name(i), f"sample-{i // sample_fields:03d}", 1.0, loader(i))
        for i in range(n)
    ]
    if part == "val" and hosts == "real":
        name = "composed-val-real-host"
        what = (
            "COMPOSED validation fields from held-apart parts only, every host the held-out "
            "real Giemsa macrophage (an unseen real host; no procedural hosts)"
        )
        tune: frozenset[str] | None = None
    elif part == "val" and hosts == "procedural":
        name = "composed-val-procedural-host"
        what = (
            "COMPOSED validation fields from held-apart parts only, every host procedural "
            "(no real host)"
        )
        tune = None
    elif part == "val":
        name = "composed-val"
        what = (
            "COMPOSED validation fields from held-apart parts only (TXL-PBC val fields and "
            "cells, held-out segpc fields, the held-out Giemsa host; procedural hosts)"
        )
        tune = None
    else:
        name = "composed-dev"
        what = "COMPOSED dev fields from training parts with a different seed (tuning only)"
        tune = frozenset(
            {
                "macrophage",
                "hemophagocyte",
                "engulfed_rbc",
                "engulfed_nucleated",
                "engulfed_platelet",
            }
        )
    return Suite(
        name=name,
        data="composed",
        description=(
            f"{what}; {n} fields of {crop} px, seed {seed}; samples of {sample_fields} fields. "
            "Figures on composed data say nothing definite about real hemophagocytes"
        ),
        scale_note="1 (composed at red cells of 30-52 px, the model's training range)",
        fields=fields,
        tune_classes=tune,
    )
