"""Evaluate a hemoscan model on the real TXL-PBC validation split and on real marrow fields.

    python training/evaluate_detector.py --model MODEL [--data-root ../shared/datasets] [--out metrics.json]

Uses the library's own inference path (``Predictor``: tuned thresholds, NMS, tiling).
- TXL-PBC val: each field is rescaled so its median labelled red cell is the model's
  ``rbc_diameter_px`` (an oracle scale taken from the labels; a user sets ``--scale``), then
  AP50 per class (scores down to 0.05) and precision / recall at the shipped thresholds.
- segpc-marrow: hemophagocyte and macrophage calls per 100 real myeloma marrow fields, where
  hemophagocytes are rare, so most calls are false alarms (these fields were also training
  backgrounds, so the figure is optimistic).
- procedural example fields (``hemoscan.examples``): hemophagocyte sensitivity, precision, false
  positives per field and exact engulfed counts on COMPOSED data from a generator training never
  used: a transfer smoke test, not a clinical figure.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from .data import CLASSES as DATA_CLASSES, read_txl_split
from .evaluate_ap import ImageDetections, ImageTruth, ap_per_class, box_iou

from hemoscan.inference.predictor import Predictor  # noqa: E402
from hemoscan.io.images import read_tile  # noqa: E402
from hemoscan.models import load_model  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FREE_CLASSES = ("rbc", "platelet", "nucleated")


def _as_arrays(dets, classes) -> ImageDetections:  # type: ignore[no-untyped-def]
    boxes = np.array([[d.x1, d.y1, d.x2, d.y2] for d in dets], np.float32).reshape(-1, 4)
    return ImageDetections(boxes, np.array([d.score for d in dets], np.float32),
                           np.array([classes.index(d.label) for d in dets], np.int64))  # fmt: skip


def precision_recall(preds, truths, label: int, thr: float) -> tuple[float, float]:  # type: ignore[no-untyped-def]
    tp = fp = n_gt = 0
    for p, t in zip(preds, truths):
        keep = (p.labels == label) & (p.scores >= thr)
        gt = t.boxes[t.labels == label]
        n_gt += len(gt)
        if not keep.any():
            continue
        iou = box_iou(p.boxes[keep][np.argsort(-p.scores[keep])], gt)
        taken = np.zeros(len(gt), bool)
        for row in iou:
            j = int(np.argmax(np.where(taken, -1, row))) if len(gt) else -1
            if j >= 0 and row[j] >= 0.5 and not taken[j]:
                taken[j] = True
                tp += 1
            else:
                fp += 1
    return tp / max(tp + fp, 1), tp / max(n_gt, 1)


def evaluate_txl(model, root: Path, limit: int | None) -> dict:  # type: ignore[no-untyped-def]
    cfg = model.config
    low_conf = replace(model, config=replace(cfg, score_thresholds={}, default_threshold=0.05))
    classes = cfg.classes
    preds, truths, times = [], [], []
    for item in read_txl_split(root / "txl-pbc", "val")[:limit]:
        scale = cfg.rbc_diameter_px / item.rbc_diameter
        image = read_tile(item.path)
        t0 = time.perf_counter()
        dets = Predictor(low_conf, scale=scale).predict(image)
        times.append(time.perf_counter() - t0)
        preds.append(_as_arrays(dets, classes))
        labels = np.array([classes.index(DATA_CLASSES[int(k)]) for k in item.boxes[:, 4]], np.int64)
        truths.append(ImageTruth(item.boxes[:, :4], labels))
    ap = ap_per_class(preds, truths, {c: classes.index(c) for c in FREE_CLASSES})
    pr = {
        c: precision_recall(preds, truths, classes.index(c), cfg.threshold(c)) for c in FREE_CLASSES
    }
    return {
        "images": len(truths),
        "ap50": {c: round(v, 4) for c, v in ap.items()},
        "precision_at_threshold": {c: round(v[0], 4) for c, v in pr.items()},
        "recall_at_threshold": {c: round(v[1], 4) for c, v in pr.items()},
        "thresholds": {c: cfg.threshold(c) for c in FREE_CLASSES},
        "median_ms_per_image": round(1000 * float(np.median(times)), 1),
    }


def evaluate_marrow(model, root: Path, limit: int | None) -> dict:  # type: ignore[no-untyped-def]
    paths = sorted((root / "segpc-marrow" / "images").glob("*"))[:limit]
    predictor = Predictor(model)
    hemo = macro = 0
    for path in paths:
        dets = predictor.predict(read_tile(path))
        hemo += sum(d.label == "hemophagocyte" for d in dets)
        macro += sum(d.label == "macrophage" for d in dets)
    n = max(len(paths), 1)
    return {"fields": len(paths), "hemophagocytes_per_100_fields": round(100 * hemo / n, 2),
            "macrophages_per_100_fields": round(100 * macro / n, 2)}  # fmt: skip


def evaluate_procedural(model, n: int) -> dict:  # type: ignore[no-untyped-def]
    """Hemophagocyte calls on ``hemoscan.examples`` fields: COMPOSED data from a generator that
    training never used (drawn cells, not real crops), a transfer smoke test only."""
    from hemoscan.examples import render_example_tile

    predictor = Predictor(model)
    tp = fp = n_true = macro_true = macro_called = engulfed_ok = engulfed_n = 0
    for i in range(n):
        rng = np.random.default_rng([2026, i])
        image, cells = render_example_tile(
            rng, (512, 512), hemophagocytes=i % 2, macrophages=(i + 1) % 2
        )
        dets = predictor.predict(image)
        truth = [c for c in cells if c.label == "hemophagocyte"]
        macro_true += sum(c.label == "macrophage" for c in cells)
        macro_called += sum(d.label == "macrophage" for d in dets)
        calls = [d for d in dets if d.label == "hemophagocyte"]
        n_true += len(truth)
        taken: set[int] = set()
        for d in sorted(calls, key=lambda d: -d.score):
            ious = [float(box_iou(np.array([[d.x1, d.y1, d.x2, d.y2]]), np.array([[c.x1, c.y1, c.x2, c.y2]]))[0, 0])
                    for c in truth]  # fmt: skip
            j = int(np.argmax(ious)) if ious else -1
            if j >= 0 and ious[j] >= 0.5 and j not in taken:
                taken.add(j)
                tp += 1
                kinds = {
                    k: sum(e[0] == k for e in truth[j].engulfed)
                    for k in ("rbc", "nucleated", "platelet")
                }
                engulfed_n += 1
                engulfed_ok += int({k: d.engulfed[k] for k in kinds} == kinds)
            else:
                fp += 1
    return {
        "fields": n,
        "note": "composed (procedurally drawn) fields, not real images",
        "hemophagocytes_true": n_true,
        "hemophagocyte_sensitivity": round(tp / max(n_true, 1), 4),
        "hemophagocyte_precision": round(tp / max(tp + fp, 1), 4),
        "false_positives_per_field": round(fp / n, 4),
        "engulfed_counts_exact": round(engulfed_ok / max(engulfed_n, 1), 4),
        "macrophages_true": macro_true,
        "macrophage_calls": macro_called,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", required=True, help="shipped model name or model folder")
    p.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "datasets")
    p.add_argument(
        "--limit", type=int, default=None, help="evaluate on the first N images of each set"
    )
    p.add_argument("--out", type=Path, help="also write the metrics as JSON")
    args = p.parse_args()
    model = load_model(args.model)
    metrics = {
        "model": {
            "name": model.config.name,
            "version": model.config.version,
            "sha256": model.sha256,
        },
        "txl_pbc_val": evaluate_txl(model, args.data_root, args.limit),
        "segpc_marrow": evaluate_marrow(model, args.data_root, args.limit),
        "procedural_examples_composed": evaluate_procedural(model, args.limit or 60),
    }
    text = json.dumps(metrics, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
