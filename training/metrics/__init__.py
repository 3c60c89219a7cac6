"""Detection metrics for hemoscan models, pure numpy (no torch, no OpenCV).

Box convention everywhere: ``x1, y1, x2, y2`` float pixels of the evaluated image, origin at the
top-left corner, x to the right, y down (the convention of :mod:`hemoscan.datamodel`). Arrays
are ``boxes float [N, 4]``, ``scores float [N]``, ``labels int [N]`` (indices into a class list
the caller chooses). Predictions and truths are given per image, in the same frame.

What is measured, and how:

- **Matching** (:func:`match_class`) follows COCO (``pycocotools.cocoeval``) exactly: per image
  and class, predictions are taken by descending score (stable), each takes the unmatched truth
  box with the highest IoU >= the IoU threshold (ties: the later box); a prediction that matches
  no truth box but overlaps an *ignore region* by ``intersection / prediction area`` >= the
  threshold is ignored (neither true nor false positive), as COCO does for crowd boxes. Classes
  that an image does not supervise (a positives-only, partially labelled image) are skipped for
  that image: neither its boxes nor its predictions count. There is no cap on predictions per
  image (COCO keeps 100; a blood field holds more cells than that), unless ``max_dets`` is set.
- **AP** (:func:`average_precision_101`): COCO's 101-point interpolated average precision:
  the mean over recall levels 0, 0.01, ..., 1 of the highest precision at that recall or more.
  ``AP50`` at IoU 0.5, ``AP50:95`` the mean over IoU 0.50, 0.55, ..., 0.95. NaN when the class
  has no truth box in the images that supervise it. Cross-checked against pycocotools in tests.
  Its 95% interval (:func:`ap_interval`): a percentile bootstrap over images (1,000 resamples,
  seed 0), the image being the unit because the cells of one field are not independent.
- **Precision / recall at a threshold** (:func:`at_threshold`): the predictions with score >=
  the threshold, matched at IoU 0.5. Greedy matching by score makes the matches of that subset
  the same as those of the full run, so every threshold is read off one matching.
- **Threshold tuning** (:func:`tune_threshold`): over the grid 0.05, 0.06, ..., 0.95, rule
  ``f1``: the threshold with the highest F1 (ties: the higher threshold); rule
  ``recall_at_fp``: the best sensitivity among the thresholds whose false positives per image
  are at most ``max_fp_per_tile`` (ties: the highest of them, so the fewest false positives;
  if no grid threshold meets the target, the highest grid value, flagged ``feasible=False``).
- **Hemophagocytes** (:func:`hemophagocyte_metrics`): true and predicted hemophagocytes are
  matched like above at IoU 0.5 (class ``hemophagocyte`` only: a true hemophagocyte called
  ``macrophage`` is a miss, counted apart). Sensitivity = TP / true, precision = TP / (TP + FP),
  false positives per tile = FP / tiles. Engulfed types, for matched hemophagocytes only:
  ``engulfed_exact`` is the fraction whose predicted engulfed-type counts (rbc / nucleated /
  platelet; granulocyte, erythroblast and lymphocyte count as nucleated) equal the truth's
  exactly; per engulfed cell, predicted and true cells of a matched pair are matched by IoU >=
  ``engulfed_iou`` regardless of type, and ``cell_type_accuracy`` is the fraction of those
  cell pairs whose type agrees (``cell_recall``: matched true cells / true cells).
- **Count agreement** (:func:`count_agreement`): per sample, hemophagocytes per 1000 nucleated
  cells (nucleated + macrophage + hemophagocyte, as ``hemoscan scan`` reports it) from the
  truth and from the predictions; over the samples where both are defined: the pairs, the
  mean absolute difference, and Bland-Altman bias (mean of predicted - true) with 95% limits
  of agreement (bias +- 1.96 SD of the differences).
- **Nested / duplicate boxes** (:func:`nested_pairs`): pairs of boxes of one image whose
  intersection covers more than half of the smaller box: one cell boxed twice, or a box inside
  another (a nucleus boxed inside its cell). Counted over a class's operating-point predictions,
  each such pair inflates the count that every rate is taken over.

The package: :mod:`.matching` (records, matching, AP), :mod:`.thresholds` (operating points,
tuning), :mod:`.hemophagocytes` and :mod:`.agreement`.
"""

from __future__ import annotations

from .agreement import CountAgreement, SampleCount, count_agreement
from .hemophagocytes import (
    ENGULFED_BASE_TYPES,
    EngulfedBox,
    HemophagocyteMetrics,
    HostBox,
    HostTile,
    base_engulfed_type,
    hemophagocyte_metrics,
)
from .matching import (
    COCO_IOUS,
    RECALL_LEVELS,
    ClassAP,
    ClassCurve,
    ImageDetections,
    ImageMatches,
    ImageTruth,
    ap_interval,
    ap_per_class,
    average_precision_101,
    box_iou,
    class_ap,
    coco_ap,
    finite_or_none,
    greedy_match,
    image_matches,
    ioa,
    match_class,
    nested_pairs,
)
from .thresholds import (
    THRESHOLD_GRID,
    OperatingPoint,
    TunedThreshold,
    TuningRule,
    at_threshold,
    precision_recall,
    tune_threshold,
)

__all__ = [
    "COCO_IOUS",
    "ENGULFED_BASE_TYPES",
    "RECALL_LEVELS",
    "THRESHOLD_GRID",
    "ClassAP",
    "ClassCurve",
    "CountAgreement",
    "EngulfedBox",
    "HemophagocyteMetrics",
    "HostBox",
    "HostTile",
    "ImageDetections",
    "ImageMatches",
    "ImageTruth",
    "OperatingPoint",
    "SampleCount",
    "TunedThreshold",
    "TuningRule",
    "ap_interval",
    "ap_per_class",
    "at_threshold",
    "average_precision_101",
    "base_engulfed_type",
    "box_iou",
    "class_ap",
    "coco_ap",
    "count_agreement",
    "finite_or_none",
    "greedy_match",
    "hemophagocyte_metrics",
    "image_matches",
    "ioa",
    "match_class",
    "nested_pairs",
    "precision_recall",
    "tune_threshold",
]
