"""Evaluate a hemoscan model through the library's own inference path; tune its thresholds.

    hemoscan evaluate --model MODEL --data shared:txl-val,composed-val,segpc-heldout --out m.json
    hemoscan evaluate --model runs/NAME/best --tune-thresholds       # tune on dev data, then report
    hemoscan evaluate --model MODEL --data coco:annotations.json     # any annotated set

Every field goes through :class:`hemoscan.inference.predictor.Predictor` (rescale, tiling,
decoding, NMS, engulfed cells attached to their host) twice: once with every threshold at
``eval_conf`` (0.05) for the AP curves and tuning, once at the model's own thresholds for
the operating-point figures (precision / recall, hemophagocyte metrics, counts, calls per 100
fields). Metric definitions: :mod:`hemoscan_training.metrics`. Boxes are ``x1, y1, x2, y2``
pixels of the input image, origin top-left.

A field's scale is a factor or ``"auto"``: the operating pass then estimates it from the
field's own cells, as ``hemoscan scan`` does (:mod:`hemoscan.inference.scale`), and the AP
pass runs at the scale it chose, so both passes see the same pixels. Such a suite reports the
scale sources and, where an oracle scale is known, the chosen scale over it (``auto_scale``).
Every suite reports the nested / duplicate ``nucleated`` pairs per field at the operating point.

Named suites over the public sets (``--data-root``, default ``../shared/datasets``):

- ``txl-val`` (real): the TXL-PBC validation split, never trained on. Each field is rescaled so
  its median *labelled* red cell is the model's ``rbc_diameter_px``: an oracle scale from the
  labels (a user sets ``--scale``). rbc / platelet / nucleated AP and precision / recall.
- ``txl-val-native`` (real): the same fields at native resolution, scale auto (the plain
  command); the oracle scale of ``txl-val`` is the reference for the chosen scales.
- ``segpc-heldout`` (real): every 5th segpc myeloma marrow field (sorted), never trained on by
  runs using :mod:`hemoscan_training.data`'s splits; rescaled by ``rbc_diameter_px / 32``
  (32 px: the fields' approximate red cell). Hemophagocyte and macrophage calls per 100
  fields: hemophagocytes are rare in myeloma marrow, so calls are mostly false alarms.
- ``segpc-heldout-native`` (real): the same fields at native resolution, scale auto, with the
  plasma cells of the segpc masks (components of >= 100 px, touching-cell clusters dropped) as
  positives-only ``nucleated`` truth: nucleated recall is plasma-cell recall (precision and AP
  cannot be measured: the other nucleated cells are not labelled).
- ``bal-heldout`` (real): the bal-macrophages patches of the held-out lavage slides
  (:data:`hemoscan_training.data.HELDOUT_BAL_SLIDES`, never trained on) at native resolution,
  scale auto; every leukocyte is boxed (macrophages as ``macrophage``, the others
  ``nucleated``) and hemophagocytes are supervised as absent, so every hemophagocyte call is
  a false one; red cells and platelets are not labelled. Oracle scale: the patches' 0.23 µm/px.
- ``composed-val`` (COMPOSED): ``N`` fixed 512 px fields of ``ComposedCrops(part="val")``, made
  only of parts training never sees (TXL-PBC val fields and cells, held-out segpc fields, the
  held-out Giemsa host). Every class's AP, hemophagocyte sensitivity / precision / false
  positives per tile / engulfed types, and per-sample count agreement (10 fields a sample).
- ``composed-val-real-host`` (COMPOSED): the same fields with every host the held-out real
  Giemsa macrophage, the one kind of host no training crop resembles by construction.
- ``txl-dev`` and ``composed-dev``: tuning data, never reported as results: the TXL-PBC dev
  fields (every 17th train field, held out of training) for rbc / platelet / nucleated, and
  composed fields from *training* parts with another seed for the host and engulfed classes.

Annotated sets: ``coco:FILE.json``, ``yolo:DIR``, ``voc:DIR``, ``qupath:DIR``, ``masks:DIR``
(``--classes`` maps source classes, ``--split`` picks a split) or ``spec:FILE.json|yaml`` (a
:class:`~hemoscan.annotations.DatasetSpec` dict with ``class_map``, ``supervised``, options).
Their fields are real unless the user says otherwise; one sample per image folder.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from hemoscan.annotations import AnnotatedImage, DatasetSpec, read_dataset
from hemoscan.annotations.spec import FORMATS
from hemoscan.datamodel import NUCLEATED_CLASSES, NUCLEATED_SUBTYPES, Detection, ScaleEstimate
from hemoscan.errors import HemoscanError
from hemoscan.inference.scale import AUTO
from hemoscan.models.onnx_format import OnnxModel
from hemoscan.models.loading import CONFIG_FILE, LoadedModel, load_model, read_manifest, weights_dir

from .metrics import (
    ClassCurve,
    CountAgreement,
    EngulfedBox,
    HemophagocyteMetrics,
    HostBox,
    HostTile,
    ImageDetections,
    ImageTruth,
    SampleCount,
    TunedThreshold,
    TuningRule,
    at_threshold,
    coco_ap,
    count_agreement,
    finite_or_none,
    hemophagocyte_metrics,
    match_class,
    nested_pairs,
    tune_threshold,
)

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "datasets"
ENGULFED_PREFIX = "engulfed_"
FREE_CLASSES = ("rbc", "platelet", "nucleated")
REPORT_SUITES = ("txl-val", "txl-val-native", "composed-val", "composed-val-real-host",
                 "segpc-heldout", "segpc-heldout-native", "bal-heldout")  # fmt: skip
TUNING_SUITES = ("txl-dev", "composed-dev")
SHARED_SUITES = (*REPORT_SUITES, *TUNING_SUITES)
#: Default prediction floor of the AP pass (and the lowest tuned threshold).
EVAL_CONF = 0.05
COMPOSED_N = 200
COMPOSED_CROP = 512
COMPOSED_SAMPLE_FIELDS = 10
#: Default tuning rules: hemophagocytes the best sensitivity at <= 0.05 false positives per
#: tile; every other class the highest F1.
HEMOPHAGOCYTE_FP_TARGET = 0.05
DEFAULT_RULES: Mapping[str, TuningRule] = {
    "hemophagocyte": TuningRule("recall_at_fp", HEMOPHAGOCYTE_FP_TARGET)
}
THRESHOLDS_SIDECAR = "thresholds.json"
#: Backends ``run`` loads a model for: a model folder (torch) or an ONNX export (onnx).
BACKENDS = ("torch", "onnx")
#: A model the evaluation path takes: PyTorch weights, or an ONNX export (``backend="onnx"``).
AnyModel = LoadedModel | OnnxModel


class EvaluationError(HemoscanError):
    """An evaluation request cannot be carried out; the message says why and what to change."""


# --------------------------------------------------------------------------- suites
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


def _oracle_rbc(records: Sequence[AnnotatedImage]) -> list[float | None]:
    out: list[float | None] = []
    for r in records:
        b = r.boxes[[lab == "rbc" for lab in r.labels]]
        out.append(
            float(np.median((b[:, 2] - b[:, 0] + b[:, 3] - b[:, 1]) / 2)) if len(b) else None
        )
    return out


def txl_suite(
    model: AnyModel, data_root: Path, part: str, limit: int | None, native: bool = False
) -> Suite:
    """TXL-PBC ``val`` (real, reported) or ``dev`` (tuning) fields at the oracle scale, or
    with ``native`` at their own resolution, scale auto (the oracle kept as the reference)."""
    from .data import CLASSES, txl_part

    root = data_root / "txl-pbc"
    if not (root / "images").is_dir():
        raise EvaluationError(f"TXL-PBC not found at {root} (set --data-root)")
    items = txl_part(root, part)[:limit]
    rbc_px = model.config.rbc_diameter_px
    supervised = frozenset(FREE_CLASSES)

    def loader(item: Any) -> Callable[[], tuple[np.ndarray, AnnotatedImage]]:
        def load() -> tuple[np.ndarray, AnnotatedImage]:
            from hemoscan.io.images import read_tile

            image = read_tile(item.path)
            labels = tuple(CLASSES[int(c)] for c in item.boxes[:, 4])
            record = AnnotatedImage(
                item.path,
                image.shape[1],
                image.shape[0],
                item.boxes[:, :4],
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
            oracle_scale=rbc_px / it.rbc_diameter,
        )
        for it in items
    ]
    name = f"txl-{part}" + ("-native" if native else "")
    what = "validation split, never trained on" if part == "val" else "dev fields (tuning only)"
    if native:
        what += ", at native resolution"
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
    import cv2

    from .data import MAX_PLASMA_CELL_RBC, SEGPC_RBC_PX

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
    from .data import SEGPC_RBC_PX, marrow_part

    root = data_root / "segpc-marrow"
    if not (root / "images").is_dir():
        raise EvaluationError(f"segpc-marrow not found at {root} (set --data-root)")
    paths = marrow_part(root, "heldout")[:limit]
    scale = model.config.rbc_diameter_px / SEGPC_RBC_PX

    def loader(path: Path) -> Callable[[], tuple[np.ndarray, AnnotatedImage]]:
        def load() -> tuple[np.ndarray, AnnotatedImage]:
            import cv2

            from hemoscan.io.images import read_tile

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
    from .data import BAL_MPP, CLASSES, HELDOUT_BAL_SLIDES, RBC_UM, bal_part

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
            from hemoscan.io.images import read_tile

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
    real_hosts_only: bool = False,
) -> Suite:
    """``n`` fixed composed fields: ``part="val"`` held-apart parts (reported as
    ``composed-val``), ``part="train"`` training parts with another seed (``composed-dev``).
    ``real_hosts_only``: the same fields with every host the real Giemsa macrophage(s) of
    ``part`` instead of mostly procedural ones (``composed-val-real-host``: the held-out one)."""
    from .composed import ComposedSet
    from .config import ComposerSection

    if not (data_root / "txl-pbc").is_dir():
        raise EvaluationError(f"the public sets were not found at {data_root} (set --data-root)")
    recipe = ComposerSection(p_real_host=1.0) if real_hosts_only else ComposerSection()
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
    if part == "val" and real_hosts_only:
        name = "composed-val-real-host"
        what = (
            "COMPOSED validation fields from held-apart parts only, every host the held-out "
            "real Giemsa macrophage (an unseen real host; no procedural hosts)"
        )
        tune: frozenset[str] | None = None
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


def annotated_suite(
    spec: DatasetSpec,
    model: AnyModel,
    scale: float | Literal["oracle", "auto"] = 1.0,
    limit: int | None = None,
    data: Literal["real", "composed"] = "real",
) -> Suite:
    """Any annotated set readable by :func:`hemoscan.annotations.read_dataset`, at a fixed
    ``scale``, ``"oracle"`` (each image's median labelled red cell brought to the model's
    ``rbc_diameter_px``) or ``"auto"`` (each image's own estimate; the oracle, for images
    with labelled red cells, kept as the reference)."""
    records = read_dataset(spec)[:limit]
    if not records:
        raise EvaluationError(f"dataset {spec.name}: no images")
    rbc_px = model.config.rbc_diameter_px
    rbc = _oracle_rbc(records)
    oracles = [rbc_px / d if d else None for d in rbc]
    scales: list[float | Literal["auto"]]
    if scale == "oracle":
        known = [d for d in rbc if d]
        if not known:
            raise EvaluationError(
                f"dataset {spec.name}: --scale oracle needs labelled red cells; set --scale"
            )
        fallback = float(np.median(known))
        scales = [rbc_px / (d or fallback) for d in rbc]
        note = f"oracle: each image rescaled so its median labelled red cell is {rbc_px:g} px"
    elif scale == AUTO:
        scales = [AUTO] * len(records)
        note = "auto: each image's own estimate, as `hemoscan scan` does"
    else:
        scales = [float(scale)] * len(records)
        note = f"fixed {float(scale):g}"

    def loader(rec: AnnotatedImage) -> Callable[[], tuple[np.ndarray, AnnotatedImage]]:
        def load() -> tuple[np.ndarray, AnnotatedImage]:
            from hemoscan.io.images import read_tile

            return read_tile(rec.image_path), rec

        return load

    base = spec.root if spec.root.is_dir() else spec.root.parent
    fields = []
    for rec, s, oracle in zip(records, scales, oracles):
        try:
            sample = rec.image_path.parent.relative_to(base).as_posix()
        except ValueError:
            sample = rec.image_path.parent.name
        fields.append(EvalField(rec.image_path.name, sample or ".", s, loader(rec), oracle))
    return Suite(
        name=spec.name,
        data=data,
        description=f"{spec.format} dataset {spec.name}"
        + (" (COMPOSED)" if data == "composed" else ""),
        scale_note=note,
        fields=fields,
    )


def parse_class_map(text: str | None) -> dict[str, str]:
    """``"0=nucleated,1=rbc"`` -> ``{"0": "nucleated", "1": "rbc"}``."""
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise EvaluationError(f"--classes entry {item!r} is not SOURCE=CLASS")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def build_suites(
    data: Sequence[str],
    model: AnyModel,
    *,
    data_root: Path = DEFAULT_DATA_ROOT,
    limit: int | None = None,
    class_map: Mapping[str, str] | None = None,
    split: str | None = None,
    scale: float | Literal["oracle", "auto"] | None = None,
    composed_n: int = COMPOSED_N,
    composed: bool = False,
) -> list[Suite]:
    """Suites for ``--data`` values: ``shared:NAME[,NAME...]`` (``shared:default`` is every
    one of :data:`REPORT_SUITES`), ``FORMAT:PATH`` or ``spec:FILE`` (at ``scale``, default 1)."""
    suites: list[Suite] = []
    n_composed = composed_n if limit is None else min(composed_n, limit)
    for text in data:
        kind, sep, rest = text.partition(":")
        if not sep or not rest:
            raise EvaluationError(
                f"--data {text!r}: use shared:NAMES, FORMAT:PATH ({', '.join(FORMATS)}) or spec:FILE"
            )
        if kind == "shared":
            names = [n.strip() for n in rest.split(",") if n.strip()]
            if names == ["default"]:
                names = list(REPORT_SUITES)
            for name in names:
                if name == "txl-val":
                    suites.append(txl_suite(model, data_root, "val", limit))
                elif name == "txl-val-native":
                    suites.append(txl_suite(model, data_root, "val", limit, native=True))
                elif name == "txl-dev":
                    suites.append(txl_suite(model, data_root, "dev", limit))
                elif name == "segpc-heldout":
                    suites.append(segpc_suite(model, data_root, limit))
                elif name == "segpc-heldout-native":
                    suites.append(segpc_suite(model, data_root, limit, native=True))
                elif name == "bal-heldout":
                    suites.append(bal_suite(model, data_root, limit))
                elif name == "composed-val":
                    from .composed import VAL_SEED

                    suites.append(composed_suite(data_root, "val", VAL_SEED, n_composed))
                elif name == "composed-val-real-host":
                    from .composed import VAL_SEED

                    suites.append(composed_suite(data_root, "val", VAL_SEED, n_composed,
                                                 real_hosts_only=True))  # fmt: skip
                elif name == "composed-dev":
                    from .composed import DEV_SEED

                    suites.append(composed_suite(data_root, "train", DEV_SEED, n_composed))
                else:
                    raise EvaluationError(
                        f"unknown suite {name!r}; known: {', '.join(SHARED_SUITES)} or default"
                    )
            continue
        if kind == "spec":
            path = Path(rest)
            try:
                text_ = path.read_text(encoding="utf-8")
            except OSError as e:
                raise EvaluationError(f"{path}: cannot read the dataset spec: {e}") from None
            if path.suffix.lower() in (".yaml", ".yml"):
                import yaml

                raw = yaml.safe_load(text_)
            else:
                try:
                    raw = json.loads(text_)
                except json.JSONDecodeError as e:
                    raise EvaluationError(f"{path}: not valid JSON: {e}") from None
            spec = DatasetSpec.from_dict(raw, base_dir=path.parent)
        elif kind in FORMATS:
            spec = DatasetSpec(
                format=kind, root=Path(rest), class_map=dict(class_map or {}), split=split
            )
        else:
            raise EvaluationError(
                f"--data {text!r}: unknown kind {kind!r}; use shared, spec or one of {', '.join(FORMATS)}"
            )
        suites.append(
            annotated_suite(
                spec,
                model,
                1.0 if scale is None else scale,
                limit,
                "composed" if composed else "real",
            )
        )
    names = [s.name for s in suites]
    if len(set(names)) != len(names):
        raise EvaluationError(f"a suite is listed twice: {names}")
    return suites


# --------------------------------------------------------------------------- running
@dataclass
class FieldRun:
    """One field's truth and the detections of both passes (``low``: every class at the
    evaluation floor; ``operating``: the model's thresholds); ``scale``: how the field was
    scaled for both (an ``"auto"`` field: the operating predictor's choice); ``oracle_scale``
    as :attr:`EvalField.oracle_scale`."""

    name: str
    sample: str
    truth: AnnotatedImage
    low: list[Detection] | None
    operating: list[Detection]
    ms: float
    scale: ScaleEstimate | None = None
    oracle_scale: float | None = None


Progress = Callable[[str, int, int], None]


def run_suite(
    model: AnyModel,
    suite: Suite,
    *,
    device: str = "cpu",
    eval_conf: float = EVAL_CONF,
    low_pass: bool = True,
    operating_pass: bool = True,
    progress: Progress | None = None,
    backend: str = "torch",
) -> list[FieldRun]:
    """Predict every field of ``suite`` (``progress(suite, done, total)`` after each) with the
    ``backend`` (``"onnx"`` for an :class:`~hemoscan.models.onnx_format.OnnxModel`).

    An ``"auto"`` field is scaled as a scan scales it: the predictor at the model's own
    thresholds estimates its scale (run even without ``operating_pass``: the thresholds
    decide which cells it measures), and the low-threshold pass runs at that scale."""
    from hemoscan.inference.predictor import Predictor

    cache: dict[tuple[float | str, float | None], Predictor] = {}

    def predictor(scale: float | str, conf: float | None) -> Predictor:
        key = (scale if isinstance(scale, str) else round(scale, 6), conf)
        if key not in cache:
            if len(cache) > 64:
                cache.clear()
            cache[key] = Predictor(model, device=device, conf=conf, scale=scale, backend=backend)
        return cache[key]

    runs = []
    for i, f in enumerate(suite.fields):
        image, truth = f.load()
        t0 = time.perf_counter()
        if f.scale == AUTO:
            (chosen,) = predictor(AUTO, None).predict_scaled([image])
            op, scale = (chosen.detections if operating_pass else []), chosen.scale
        else:
            op = predictor(f.scale, None).predict(image) if operating_pass else []
            scale = ScaleEstimate(float(f.scale), "given")
        ms = 1000 * (time.perf_counter() - t0)
        low = None
        if low_pass:
            fixed = [(scale.scale, scale.source)]
            low = predictor(scale.scale, eval_conf).predict_scaled([image], fixed)[0].detections
        runs.append(FieldRun(f.name, f.sample, truth, low, op, ms, scale, f.oracle_scale))
        if progress:
            progress(suite.name, i + 1, len(suite.fields))
    return runs


def _class_index(classes: Sequence[str]) -> dict[str, int]:
    index = {c: i for i, c in enumerate(classes)}
    if "engulfed_nucleated" in index:
        for sub in NUCLEATED_SUBTYPES:
            index.setdefault(ENGULFED_PREFIX + sub, index["engulfed_nucleated"])
    return index


def detections_to_arrays(dets: Sequence[Detection], index: Mapping[str, int]) -> ImageDetections:
    """Free cells and engulfed cells (as ``engulfed_<type>``) as arrays of class indices."""
    boxes, scores, labels = [], [], []
    for d in dets:
        if d.label in index:
            boxes.append((d.x1, d.y1, d.x2, d.y2))
            scores.append(d.score)
            labels.append(index[d.label])
        for c in d.engulfed_cells:
            name = ENGULFED_PREFIX + c.label
            if name in index:
                boxes.append((c.x1, c.y1, c.x2, c.y2))
                scores.append(c.score)
                labels.append(index[name])
    return ImageDetections(np.array(boxes).reshape(-1, 4), np.array(scores), np.array(labels))


def truth_to_arrays(record: AnnotatedImage, index: Mapping[str, int]) -> tuple[ImageTruth, int]:
    """The record as :class:`ImageTruth` and the number of boxes of classes the model lacks."""
    keep = [i for i, lab in enumerate(record.labels) if lab in index]
    labels = np.array([index[record.labels[i]] for i in keep], np.int64)
    supervised = {index[c] for c in record.supervised if c in index}
    unsupervised = frozenset(set(index.values()) - supervised)
    truth = ImageTruth(record.boxes[keep], labels, record.ignore, unsupervised=unsupervised)
    return truth, len(record.labels) - len(keep)


def _hosts_from_truth(record: AnnotatedImage) -> tuple[HostBox, ...]:
    hosts = []
    for i, lab in enumerate(record.labels):
        if lab != "hemophagocyte":
            continue
        cells = tuple(
            EngulfedBox(record.labels[j].removeprefix(ENGULFED_PREFIX), tuple(record.boxes[j]))  # type: ignore[arg-type]
            for j, p in enumerate(record.parents)
            if p == i
        )
        hosts.append(HostBox(tuple(record.boxes[i]), cells))  # type: ignore[arg-type]
    return tuple(hosts)


def _hosts_from_detections(dets: Sequence[Detection]) -> tuple[HostBox, ...]:
    return tuple(
        HostBox(
            (d.x1, d.y1, d.x2, d.y2),
            tuple(
                EngulfedBox(c.label, (c.x1, c.y1, c.x2, c.y2), c.score) for c in d.engulfed_cells
            ),
            d.score,
        )
        for d in dets
        if d.label == "hemophagocyte"
    )


def _boxes_of(labels: Sequence[str], boxes: np.ndarray, name: str) -> np.ndarray:
    return np.asarray(boxes, np.float64).reshape(-1, 4)[[lab == name for lab in labels]]


def _round(value: Any, digits: int = 4) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, digits)
    if isinstance(value, dict):
        return {k: _round(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_round(v, digits) for v in value]
    return value


def suite_metrics(model: AnyModel, suite: Suite, runs: Sequence[FieldRun]) -> dict[str, Any]:
    """The JSON section of one suite (see the module docstring and README)."""
    cfg = model.config
    classes = cfg.classes
    index = _class_index(classes)
    thresholds = {c: cfg.threshold(c) for c in classes}
    section: dict[str, Any] = {
        "data": suite.data,
        "description": suite.description,
        "scale": suite.scale_note,
        "images": len(runs),
    }
    n = max(len(runs), 1)
    calls = {
        c: sum(d.label == c for r in runs for d in r.operating)
        for c in ("hemophagocyte", "macrophage")
    }
    section["calls_per_100_fields"] = {c: round(100 * k / n, 2) for c, k in calls.items()}
    section["calls"] = calls
    nested = sum(
        nested_pairs(np.array([(d.x1, d.y1, d.x2, d.y2) for d in r.operating
                               if d.label == "nucleated"]).reshape(-1, 4))  # fmt: skip
        for r in runs
    )
    section["nested_nucleated_pairs"] = nested
    section["nested_nucleated_pairs_per_field"] = round(nested / n, 3)
    if runs:
        section["median_ms_per_field"] = round(statistics.median(r.ms for r in runs), 1)
    if any(f.scale == AUTO for f in suite.fields):
        section["auto_scale"] = _auto_scale(runs)
    if not suite.has_truth:
        section["thresholds"] = {c: thresholds[c] for c in ("hemophagocyte", "macrophage")}
        return section

    truths, dropped = [], 0
    recall_only = {index[c] for c in suite.recall_only if c in index}
    for r in runs:
        t, k = truth_to_arrays(r.truth, index)
        truths.append(replace(t, unsupervised=t.unsupervised - recall_only) if recall_only else t)
        dropped += k
    if dropped:
        section["truth_boxes_of_classes_the_model_lacks"] = dropped
    objects = {c: 0 for c in classes}
    supervising = {c: 0 for c in classes}
    calls_where_supervised = {c: 0 for c in classes}
    for r in runs:
        for c in classes:
            if c in r.truth.supervised or c in suite.recall_only:
                supervising[c] += 1
                objects[c] += sum(index.get(lab) == index[c] for lab in r.truth.labels)
                calls_where_supervised[c] += sum(d.label == c for d in r.operating)
    # a class supervised as absent (no truth box) is evaluated where the model calls it:
    # its calls are its false positives (e.g. hemophagocytes in lavage)
    evaluated = [c for c in classes if objects[c] > 0 or calls_where_supervised[c] > 0]
    section["objects"] = {c: objects[c] for c in evaluated}
    section["images_supervising"] = {c: supervising[c] for c in evaluated}
    section["thresholds"] = {c: thresholds[c] for c in evaluated}

    det: dict[str, Any] = {}
    with_ap = [c for c in evaluated if c not in suite.recall_only]
    if with_ap and runs and runs[0].low is not None:
        low = [detections_to_arrays(r.low or [], index) for r in runs]
        aps = coco_ap(low, truths, {c: classes.index(c) for c in with_ap})
        for c, ap in aps.items():
            det[c] = {"ap50": ap.ap50, "ap75": ap.ap75, "ap50_95": ap.ap50_95}
    op = [detections_to_arrays(r.operating, index) for r in runs]
    for c in evaluated:
        point = at_threshold(match_class(op, truths, classes.index(c), 0.5), 0.0, c)
        det.setdefault(c, {}).update(
            threshold=thresholds[c],
            precision=point.precision,
            recall=point.recall,
            tp=point.tp,
            fp=point.fp,
            fn=point.fn,
        )
        if c in suite.recall_only:  # unlabelled objects of the class make its calls unknowable
            det[c].update(precision=None, fp=None, positives_only=True)
    section["detection"] = _round(det)

    host_runs = [r for r in runs if "hemophagocyte" in r.truth.supervised]
    if host_runs and any("hemophagocyte" in r.truth.labels for r in host_runs):
        tiles = [
            HostTile(
                truth=_hosts_from_truth(r.truth),
                preds=_hosts_from_detections(r.operating),
                ignore=r.truth.ignore,
                true_macrophages=_boxes_of(r.truth.labels, r.truth.boxes, "macrophage")
                if "macrophage" in r.truth.supervised
                else np.zeros((0, 4)),
                pred_macrophages=np.array(
                    [(d.x1, d.y1, d.x2, d.y2) for d in r.operating if d.label == "macrophage"]
                ).reshape(-1, 4),
            )
            for r in host_runs
        ]
        hm: HemophagocyteMetrics = hemophagocyte_metrics(tiles)
        section["hemophagocyte"] = _round(hm.to_dict())
        section["hemophagocyte"]["threshold"] = thresholds["hemophagocyte"]
        section["count_agreement"] = _round(_count_agreement(host_runs).to_dict(), 3)
        section["count_agreement"]["note"] = (
            "per sample, hemophagocytes per 1000 nucleated cells (nucleated + macrophage + "
            "hemophagocyte), true vs predicted at the operating thresholds, over the fields "
            "whose nucleated cells are fully labelled"
        )
    return section


def _auto_scale(runs: Sequence[FieldRun]) -> dict[str, Any]:
    """How the fields were scaled: counts per scale source, the chosen scale over the oracle
    (``n`` fields with an oracle: median, min, max, the fraction within 1.25x either way) and
    each field's record."""
    sources: dict[str, int] = {}
    for r in runs:
        if r.scale is not None:
            sources[r.scale.source] = sources.get(r.scale.source, 0) + 1
    ratios = [r.scale.scale / r.oracle_scale for r in runs if r.scale and r.oracle_scale]
    return {
        "fields_by_source": dict(sorted(sources.items(), key=lambda kv: -kv[1])),
        "ratio_to_oracle": {
            "n": len(ratios),
            "median": round(statistics.median(ratios), 4),
            "min": round(min(ratios), 4),
            "max": round(max(ratios), 4),
            "within_1.25x": round(sum(1 / 1.25 <= q <= 1.25 for q in ratios) / len(ratios), 4),
        }
        if ratios
        else None,
        "fields": [
            {
                "field": r.name,
                "scale": round(r.scale.scale, 4),
                "source": r.scale.source,
                "estimate": None if r.scale.estimate is None else round(r.scale.estimate, 4),
                "oracle": None if r.oracle_scale is None else round(r.oracle_scale, 4),
            }
            for r in runs
            if r.scale is not None
        ],
    }


def _count_agreement(runs: Sequence[FieldRun]) -> CountAgreement:
    by_sample: dict[str, list[int]] = {}
    for r in runs:
        if not {"nucleated", "hemophagocyte", "macrophage"} <= r.truth.supervised:
            continue
        acc = by_sample.setdefault(r.sample, [0, 0, 0, 0])
        acc[0] += sum(lab == "hemophagocyte" for lab in r.truth.labels)
        acc[1] += sum(lab in NUCLEATED_CLASSES for lab in r.truth.labels)
        acc[2] += sum(d.label == "hemophagocyte" for d in r.operating)
        acc[3] += sum(d.label in NUCLEATED_CLASSES for d in r.operating)
    return count_agreement([SampleCount(s, *v) for s, v in by_sample.items()])


# --------------------------------------------------------------------------- tuning
@dataclass(frozen=True)
class ThresholdTuning:
    """Tuned thresholds (``thresholds``: class -> value) with each class's result and data."""

    thresholds: dict[str, float]
    results: dict[str, TunedThreshold]
    suites: dict[str, tuple[str, ...]]
    untuned: tuple[str, ...]
    eval_conf: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "thresholds": self.thresholds,
            "eval_conf": self.eval_conf,
            "untuned_classes": list(self.untuned),
            "classes": {
                c: {
                    "threshold": r.threshold,
                    "objective": r.objective,
                    "rule": r.rule,
                    "feasible": r.feasible,
                    "tuned_on": list(self.suites[c]),
                    "images": r.point.n_images,
                    "tp": r.point.tp,
                    "fp": r.point.fp,
                    "fn": r.point.fn,
                    "precision": _round(r.point.precision),
                    "recall": _round(r.point.recall),
                    "f1": _round(r.point.f1),
                    "fp_per_tile": _round(r.point.fp_per_image),
                }
                for c, r in self.results.items()
            },
        }


def tune_thresholds(
    model: LoadedModel,
    suite_runs: Sequence[tuple[Suite, Sequence[FieldRun]]],
    rules: Mapping[str, TuningRule] = DEFAULT_RULES,
    eval_conf: float = EVAL_CONF,
) -> ThresholdTuning:
    """Tune each class on the suites allowed to tune it (``Suite.tune_classes``), from the
    low-threshold pass. Suites meant for reporting are refused.

    Engulfed classes are tuned last, on the engulfed cells of hemophagocytes that pass the
    hemophagocyte threshold just tuned (or the model's, if untuned): at the operating point an
    engulfed cell is reported only inside a reported hemophagocyte."""
    for suite, _ in suite_runs:
        if suite.name in REPORT_SUITES:
            raise EvaluationError(
                f"{suite.name} is reporting data; tune on {' or '.join(TUNING_SUITES)} or your own set"
            )
    classes = model.config.classes
    index = _class_index(classes)
    results: dict[str, TunedThreshold] = {}
    used: dict[str, tuple[str, ...]] = {}
    untuned = []
    grid = [t for t in np.round(np.arange(0.05, 0.9501, 0.01), 2) if t >= eval_conf - 1e-9]
    ordered = sorted(classes, key=lambda c: c.startswith(ENGULFED_PREFIX))
    for c in ordered:
        host_floor = 0.0
        if c.startswith(ENGULFED_PREFIX) and "hemophagocyte" in classes:
            host = results.get("hemophagocyte")
            host_floor = host.threshold if host else model.config.threshold("hemophagocyte")
        preds, truths, names = [], [], []
        for suite, runs in suite_runs:
            if not suite.has_truth or (
                suite.tune_classes is not None and c not in suite.tune_classes
            ):
                continue
            if any(r.low is None for r in runs):
                raise EvaluationError(f"{suite.name}: tuning needs the low-threshold pass")
            names.append(suite.name)
            preds += [
                detections_to_arrays(_without_hosts_below(r.low or [], host_floor), index)
                for r in runs
            ]
            truths += [truth_to_arrays(r.truth, index)[0] for r in runs]
        curve: ClassCurve = match_class(preds, truths, classes.index(c), 0.5)
        tuned = tune_threshold(curve, rules.get(c, TuningRule()), c, grid) if preds else None
        if tuned is None:
            untuned.append(c)
            continue
        results[c] = tuned
        used[c] = tuple(names)
    thresholds = {c: results[c].threshold for c in classes if c in results}
    return ThresholdTuning(
        thresholds, {c: results[c] for c in thresholds}, used, tuple(untuned), eval_conf
    )


def _without_hosts_below(dets: Sequence[Detection], threshold: float) -> list[Detection]:
    """``dets`` without the hemophagocytes (and so their engulfed cells) scoring < ``threshold``.

    An engulfed cell belongs to the highest-scoring hemophagocyte holding it, so when that host
    is below the threshold no reported host holds the cell: dropping it is what the operating
    path does."""
    return [d for d in dets if d.label != "hemophagocyte" or d.score >= threshold]


def write_thresholds(model: LoadedModel, tuning: ThresholdTuning) -> LoadedModel:
    """Store tuned thresholds in the model folder's ``config.json`` (other classes keep theirs)
    and the tuning record in ``thresholds.json`` beside it; return the model reloaded.

    Only the config changes: the weights and their sha256 (which ``load_model`` checks) stay
    as they were. Shipped models (``weights/``, checked against the manifest) are refused:
    tune the training run's folder, then publish it.
    """
    from hemoscan.io.files import atomic_write_text

    folder = model.folder.resolve()
    shipped = {(weights_dir() / e["folder"]).resolve() for e in read_manifest().values()}
    if folder in shipped:
        raise EvaluationError(
            f"{folder} is a shipped model; tune the training run's folder "
            "(e.g. runs/NAME/best) and publish it with training/publish_model.py"
        )
    if not tuning.thresholds:
        raise EvaluationError("no class could be tuned (no truth boxes in the tuning data)")
    cfg = model.config
    merged = {**cfg.score_thresholds, **tuning.thresholds}
    new = replace(cfg, score_thresholds={c: merged[c] for c in cfg.classes if c in merged})
    atomic_write_text(folder / CONFIG_FILE, json.dumps(new.to_dict(), indent=2) + "\n")
    atomic_write_text(folder / THRESHOLDS_SIDECAR, json.dumps(tuning.to_dict(), indent=2) + "\n")
    reloaded = load_model(str(folder))
    if reloaded.config.score_thresholds != new.score_thresholds:
        raise EvaluationError(f"{folder / CONFIG_FILE}: thresholds did not round-trip")
    return reloaded


# --------------------------------------------------------------------------- whole runs
def training_record(folder: Path) -> dict[str, Any] | None:
    """Training wall time and images/s from the run's per-epoch ``results.csv`` (the model
    folder's ``training_results.csv`` or ``results.csv``, or its parent's ``results.csv``):
    ``wall_s`` (validation included, summed over resumed segments), the median of the epochs'
    ``images_per_s`` and, when the run's ``config.json`` gives the batch size, images / wall."""
    for path in (
        folder / "training_results.csv",
        folder / "results.csv",
        folder.parent / "results.csv",
    ):
        if path.is_file():
            break
    else:
        return None
    try:
        rows = list(csv.DictReader(path.open(encoding="utf-8")))
        wall = [float(r["wall_s"]) for r in rows if r.get("wall_s")]
        speed = [float(r["images_per_s"]) for r in rows if r.get("images_per_s")]
    except (OSError, ValueError, KeyError):
        return None
    if not wall:
        return None
    # wall_s is cumulative within one process and restarts at 0 when a run is resumed
    total = sum(a for a, b in itertools.pairwise(wall) if b < a) + wall[-1]
    out: dict[str, Any] = {
        "source": str(path),
        "epochs": len(rows),
        "wall_s": round(total, 1),
        "images_per_s_median": round(statistics.median(speed), 2) if speed else None,
    }
    try:
        steps = int(rows[-1]["step"])
        out["images"] = steps * _batch_size(path.parent)
        out["images_per_s_overall"] = round(out["images"] / total, 2) if total > 0 else None
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return out


def _batch_size(run: Path) -> int:
    """The training batch size from a run folder's ``resolved.yaml`` (``hemoscan train``) or
    ``config.json`` (the older script); KeyError when neither gives it."""
    if (run / "resolved.yaml").is_file():
        import yaml

        try:
            return int(yaml.safe_load((run / "resolved.yaml").read_text())["data"]["batch_size"])
        except yaml.YAMLError:
            raise KeyError("batch_size") from None
    if (run / "config.json").is_file():
        return int(json.loads((run / "config.json").read_text())["batch_size"])
    raise KeyError("batch_size")


def evaluate(
    model: AnyModel,
    suites: Sequence[Suite],
    *,
    device: str = "cpu",
    eval_conf: float = EVAL_CONF,
    progress: Progress | None = None,
    backend: str = "torch",
) -> dict[str, Any]:
    """Metrics of ``model`` on ``suites`` as a JSON-ready dict (see the module docstring);
    ``backend="onnx"`` for an :class:`~hemoscan.models.onnx_format.OnnxModel` (settings then record
    its ``quantization``, ``None`` for full precision, and the model its ``onnx_sha256``)."""
    sections = {}
    for suite in suites:
        runs = run_suite(
            model,
            suite,
            device=device,
            eval_conf=eval_conf,
            low_pass=suite.has_truth,
            progress=progress,
            backend=backend,
        )
        sections[suite.name] = suite_metrics(model, suite, runs)
    return {
        "model": {
            "name": model.config.name,
            "version": model.config.version,
            "sha256": model.sha256,
            "folder": str(model.folder),
            **({"onnx_sha256": model.onnx_sha256} if isinstance(model, OnnxModel) else {}),
        },
        "thresholds": {c: model.config.threshold(c) for c in model.config.classes},
        "settings": {
            "eval_conf": eval_conf,
            "iou": 0.5,
            "ap50_95_ious": "0.50:0.05:0.95",
            "device": device,
            "backend": backend,
            "quantization": getattr(model, "quantization", None),
        },
        "sections": sections,
        "training": training_record(model.folder),
        "notes": [
            (
                "composed sections are measured on COMPOSED images (real parts, synthetic "
                "hemophagocytes): they say nothing definite about real hemophagocytes"
            ),
            (
                "AP is COCO's 101-point interpolated AP (pycocotools' matching, no cap on "
                "predictions per image) from a pass with every threshold at eval_conf; precision, "
                "recall, hemophagocyte metrics and counts come from a pass at the model's own "
                "thresholds"
            ),
        ],
    }


def run(
    model_name: str,
    data: Sequence[str],
    *,
    data_root: Path = DEFAULT_DATA_ROOT,
    out: Path | None = None,
    limit: int | None = None,
    class_map: Mapping[str, str] | None = None,
    split: str | None = None,
    scale: float | Literal["oracle", "auto"] | None = None,
    composed_n: int = COMPOSED_N,
    composed: bool = False,
    tune: bool = False,
    tune_data: Sequence[str] = ("shared:txl-dev,composed-dev",),
    device: str = "cpu",
    eval_conf: float = EVAL_CONF,
    progress: Progress | None = None,
    backend: str = "torch",
) -> dict[str, Any]:
    """What ``hemoscan evaluate`` does: (tune and store thresholds,) evaluate, write JSON.

    ``backend="onnx"``: ``model_name`` is a folder written by ``hemoscan export`` (a
    full-precision or int8 export), run by onnxruntime on the CPU; thresholds are then not tuned
    (tune the source model folder, then export it again).
    """
    if not 0 < eval_conf <= 0.5:
        raise EvaluationError(f"eval_conf must be in (0, 0.5], got {eval_conf}")
    if backend not in BACKENDS:
        raise EvaluationError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    model: AnyModel
    if backend == "onnx":
        if tune:
            raise EvaluationError(
                "thresholds are tuned on the source model folder (backend torch), then exported "
                "again; evaluate the ONNX export without --tune-thresholds"
            )
        from hemoscan.models.onnx_format import load_onnx_model

        model = load_onnx_model(model_name)
    else:
        model = load_model(model_name)
    common: dict[str, Any] = {
        "data_root": data_root,
        "limit": limit,
        "class_map": class_map,
        "split": split,
        "scale": scale,
        "composed_n": composed_n,
        "composed": composed,
    }
    tuning = None
    if tune:
        assert isinstance(model, LoadedModel)  # tuning needs the source folder (refused above)
        tune_suites = build_suites(tune_data, model, **common)
        tune_runs = [
            (
                s,
                run_suite(
                    model,
                    s,
                    device=device,
                    eval_conf=eval_conf,
                    operating_pass=False,
                    progress=progress,
                ),
            )
            for s in tune_suites
        ]
        tuning = tune_thresholds(model, tune_runs, eval_conf=eval_conf)
        model = write_thresholds(model, tuning)
    suites = build_suites(data, model, **common)
    metrics = evaluate(
        model, suites, device=device, eval_conf=eval_conf, progress=progress, backend=backend
    )
    metrics["settings"].update(data=list(data), data_root=str(data_root), limit=limit)
    if tuning is not None:
        metrics["tuning"] = tuning.to_dict()
        metrics["tuning"]["written_to"] = str(model.folder / CONFIG_FILE)
    if out is not None:
        from hemoscan.io.files import atomic_write_text

        atomic_write_text(out, json.dumps(_json_safe(metrics), indent=2) + "\n")
    return metrics


def _json_safe(value: Any) -> Any:
    if isinstance(value, float):
        return finite_or_none(value)
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return _json_safe(value.item())
    return value


# --------------------------------------------------------------------------- printing
def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_metrics(metrics: Mapping[str, Any], console: Any = None) -> None:
    """Rich tables of a metrics dict: one per suite, real vs composed in each title."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    m = metrics["model"]
    console.print(
        f"[bold]{m['name']}[/bold] {m['version']}  sha256 {m['sha256'][:12]}...  ({m['folder']})"
    )
    settings = metrics.get("settings", {})
    if settings.get("backend", "torch") != "torch":
        quantization = settings.get("quantization") or "full precision"
        console.print(f"backend {settings['backend']} ({quantization})")
    if "tuning" in metrics:
        t = Table(title="Tuned thresholds (dev data, not reported below as results)")
        for col in ("class", "threshold", "rule", "tuned on", "P", "R", "F1", "FP/tile"):
            t.add_column(col)
        for c, r in metrics["tuning"]["classes"].items():
            t.add_row(
                c,
                _fmt(r["threshold"], 2),
                r["objective"],
                ", ".join(r["tuned_on"]),
                _fmt(r["precision"]),
                _fmt(r["recall"]),
                _fmt(r["f1"]),
                _fmt(r["fp_per_tile"]),
            )
        console.print(t)
    for name, s in metrics["sections"].items():
        kind = "REAL" if s["data"] == "real" else "COMPOSED"
        console.print(
            f"\n[bold]{name}[/bold] [{'green' if kind == 'REAL' else 'magenta'}]{kind}[/] "
            f"- {s['images']} images - {s['description']}"
        )
        console.print(f"  scale: {s['scale']}")
        if s.get("auto_scale"):
            a = s["auto_scale"]
            line = "  auto scale sources: " + ", ".join(
                f"{src} {k}" for src, k in a["fields_by_source"].items()
            )
            if q := a.get("ratio_to_oracle"):
                line += (
                    f"; chosen / oracle scale: median {_fmt(q['median'])} (min {_fmt(q['min'])}, "
                    f"max {_fmt(q['max'])}), within 1.25x {_fmt(q['within_1.25x'])} of {q['n']}"
                )
            console.print(line)
        if s.get("detection"):
            t = Table(title=f"{name} ({kind}): detection")
            for col in ("class", "objects", "AP50", "AP50:95", "thr", "precision", "recall"):
                t.add_column(col, justify="right" if col != "class" else "left")
            for c, d in s["detection"].items():
                t.add_row(
                    c + (" (positives only)" if d.get("positives_only") else ""),
                    str(s["objects"].get(c, "")),
                    _fmt(d.get("ap50")),
                    _fmt(d.get("ap50_95")),
                    _fmt(d.get("threshold"), 2),
                    _fmt(d.get("precision")),
                    _fmt(d.get("recall")),
                )
            console.print(t)
        if "hemophagocyte" in s:
            h = s["hemophagocyte"]
            console.print(
                f"  hemophagocytes ({kind}): sensitivity {_fmt(h['sensitivity'])} ({h['tp']}/{h['true']}), "
                f"precision {_fmt(h['precision'])}, FP/tile {_fmt(h['fp_per_tile'])}, "
                f"engulfed types exact {_fmt(h['engulfed_exact'])} ({h['engulfed_exact_n']}), "
                f"engulfed cell type accuracy {_fmt(h['engulfed_cell_type_accuracy'])}"
            )
            ca = s["count_agreement"]
            console.print(
                f"  count agreement per 1000 nucleated ({kind}): {ca['pairs_n']} samples, "
                f"mean |diff| {_fmt(ca['mean_abs_difference'], 1)}, bias {_fmt(ca['bias'], 1)}, "
                f"limits {ca['limits_of_agreement']}"
            )
        calls = s["calls_per_100_fields"]
        console.print(
            f"  calls per 100 fields: hemophagocyte {calls['hemophagocyte']}, macrophage "
            f"{calls['macrophage']}; median {s.get('median_ms_per_field', '-')} ms per field"
        )
        if "nested_nucleated_pairs_per_field" in s:
            pairs = s["nested_nucleated_pairs"]
            console.print(
                "  nested / duplicate nucleated pairs per field: "
                f"{_fmt(s['nested_nucleated_pairs_per_field'])} ({pairs} pairs)"
            )
    if metrics.get("training"):
        tr = metrics["training"]
        console.print(
            f"\ntraining: {tr['wall_s']} s wall, {tr.get('images_per_s_median')} images/s "
            f"(median per epoch) from {tr['source']}"
        )


if __name__ == "__main__":
    import sys

    from hemoscan.cli.app import app

    app(["evaluate", *sys.argv[1:]])
