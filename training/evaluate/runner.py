"""A whole evaluation: (tune,) run every suite, gather the metrics, write the JSON."""

from __future__ import annotations

import csv
import itertools
import json
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from hemoscan.choices import BACKENDS
from hemoscan.inference.backends import AnyModel
from hemoscan.io.files import atomic_write_text
from hemoscan.models.loading import CONFIG_FILE, LoadedModel, load_model
from hemoscan.models.onnx_format import OnnxModel, load_onnx_model

from ..metrics import finite_or_none
from .common import COMPOSED_N, DEFAULT_DATA_ROOT, EVAL_CONF, EvaluationError
from .predict import Progress, run_suite
from .scoring import suite_metrics
from .selection import build_suites
from .suites import Suite
from .tuning import tune_thresholds, write_thresholds


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
    precision: str | None = None,
) -> dict[str, Any]:
    """What ``hemoscan evaluate`` does: (tune and store thresholds,) evaluate, write JSON.

    ``backend="onnx"``: ``model_name`` is a folder written by ``hemoscan export`` (a
    full-precision or int8 export) or a model folder holding one, run by onnxruntime on the CPU
    (its export of ``precision``, as :func:`~hemoscan.models.onnx_format.load_onnx_model` picks);
    thresholds are then not tuned (tune the source model folder, then export it again).
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
        model = load_onnx_model(model_name, precision=precision)
    else:
        if precision not in (None, "auto", "fp32"):
            raise EvaluationError(f"precision {precision!r} runs with --backend onnx")
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
