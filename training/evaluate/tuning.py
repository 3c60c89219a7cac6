"""Threshold tuning on dev suites, and storing the tuned thresholds in a model folder."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hemoscan.annotations.record import ENGULFED_PREFIX
from hemoscan.datamodel import Detection
from hemoscan.io.files import atomic_write_text
from hemoscan.models.loading import CONFIG_FILE, LoadedModel, load_model, read_manifest, weights_dir

from ..metrics import ClassCurve, TunedThreshold, TuningRule, match_class, tune_threshold
from .common import (
    DEFAULT_RULES,
    EVAL_CONF,
    REPORT_SUITES,
    THRESHOLDS_SIDECAR,
    TUNING_SUITES,
    EvaluationError,
)
from .predict import FieldRun
from .scoring import class_index, detections_to_arrays, round_floats, truth_to_arrays
from .suites import Suite


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
                    "precision": round_floats(r.point.precision),
                    "recall": round_floats(r.point.recall),
                    "f1": round_floats(r.point.f1),
                    "fp_per_tile": round_floats(r.point.fp_per_image),
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
    index = class_index(classes)
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
