"""The metrics of one suite's runs (a JSON section): detection, hemophagocytes, counts, scale."""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from hemoscan.annotations import AnnotatedImage
from hemoscan.annotations.record import ENGULFED_PREFIX
from hemoscan.datamodel import NUCLEATED_CLASSES, NUCLEATED_SUBTYPES, Detection
from hemoscan.inference.backends import AnyModel
from hemoscan.inference.scale import AUTO

from ..metrics import (
    CountAgreement,
    EngulfedBox,
    HemophagocyteMetrics,
    HostBox,
    HostTile,
    ImageDetections,
    ImageTruth,
    SampleCount,
    ap_interval,
    at_threshold,
    coco_ap,
    count_agreement,
    hemophagocyte_metrics,
    image_matches,
    match_class,
    nested_pairs,
)
from .predict import FieldRun
from .suites import Suite


def class_index(classes: Sequence[str]) -> dict[str, int]:
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


def round_floats(value: Any, digits: int = 4) -> Any:
    if isinstance(value, float):
        return None if math.isnan(value) else round(value, digits)
    if isinstance(value, dict):
        return {k: round_floats(v, digits) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [round_floats(v, digits) for v in value]
    return value


def suite_metrics(model: AnyModel, suite: Suite, runs: Sequence[FieldRun]) -> dict[str, Any]:
    """The JSON section of one suite (see the module docstring and README)."""
    cfg = model.config
    classes = cfg.classes
    index = class_index(classes)
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
            interval = ap_interval(image_matches(low, truths, classes.index(c), 0.5))
            det[c] = {"ap50": ap.ap50, "ap50_ci95": interval, "ap75": ap.ap75,
                      "ap50_95": ap.ap50_95}  # fmt: skip
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
    section["detection"] = round_floats(det)

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
        section["hemophagocyte"] = round_floats(hm.to_dict())
        section["hemophagocyte"]["threshold"] = thresholds["hemophagocyte"]
        section["count_agreement"] = round_floats(_count_agreement(host_runs).to_dict(), 3)
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
