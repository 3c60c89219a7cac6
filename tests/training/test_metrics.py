"""hemoscan_training.metrics on hand-made cases with known answers, and against pycocotools."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
from hemoscan_training.metrics import (
    EngulfedBox,
    HostBox,
    HostTile,
    ImageDetections,
    ImageTruth,
    SampleCount,
    TuningRule,
    ap_interval,
    ap_per_class,
    at_threshold,
    coco_ap,
    count_agreement,
    hemophagocyte_metrics,
    image_matches,
    match_class,
    nested_pairs,
    tune_threshold,
)


def dets(*rows: tuple[float, float, float, float, float, int]) -> ImageDetections:
    """rows: x1, y1, x2, y2, score, label."""
    a = np.array(rows, np.float64).reshape(-1, 6)
    return ImageDetections(a[:, :4], a[:, 4], a[:, 5].astype(int))


def truth(*rows: tuple[float, float, float, float, int], **kw: object) -> ImageTruth:
    a = np.array(rows, np.float64).reshape(-1, 5)
    return ImageTruth(a[:, :4], a[:, 4].astype(int), **kw)  # type: ignore[arg-type]


A, B, C = (0, 0, 10, 10), (20, 20, 30, 30), (40, 40, 50, 50)
FAR = (100, 100, 110, 110)


def test_perfect_predictions_score_one() -> None:
    t = [truth((*A, 0), (*B, 0), (*C, 1))]
    p = [dets((*A, 0.9, 0), (*B, 0.8, 0), (*C, 0.7, 1))]
    aps = coco_ap(p, t, {"a": 0, "b": 1})
    assert aps["a"].ap50 == pytest.approx(1.0) and aps["a"].ap50_95 == pytest.approx(1.0)
    assert aps["b"].ap50 == pytest.approx(1.0) and aps["b"].n_gt == 1


def test_false_positive_between_true_positives_gives_the_exact_101_point_ap() -> None:
    # TP 0.9, FP 0.8, TP 0.7 over 2 truths: precision envelope 1 up to recall 0.5 (51 of the
    # 101 recall levels), 2/3 above it (50 levels)
    t = [truth((*A, 0), (*B, 0))]
    p = [dets((*A, 0.9, 0), (*FAR, 0.8, 0), (*B, 0.7, 0))]
    assert ap_per_class(p, t, {"a": 0})["a"] == pytest.approx((51 + 50 * 2 / 3) / 101, abs=1e-12)
    # the FP scoring highest: precision 1/2 then 2/3 -> 2/3 at every level
    p = [dets((*FAR, 0.95, 0), (*A, 0.9, 0), (*B, 0.7, 0))]
    assert ap_per_class(p, t, {"a": 0})["a"] == pytest.approx(2 / 3, abs=1e-12)


def test_ap_interval_resamples_images_and_brackets_the_ap() -> None:
    # 20 fields: every odd one holds a false positive scoring above its true cell
    t = [truth((*A, 0)) for _ in range(20)]
    p = [dets((*A, 0.9, 0), *(((*FAR, 0.95, 0),) if i % 2 else ())) for i in range(20)]
    matches = image_matches(p, t, 0)
    assert [m.n_gt for m in matches] == [1] * 20
    assert [int(m.tp.sum()) for m in matches] == [1] * 20
    ap = ap_per_class(p, t, {"a": 0})["a"]
    lo, hi = ap_interval(matches)
    assert lo < ap < hi and hi - lo > 0.05  # fields differ: the interval has width
    assert ap_interval(matches) == (lo, hi)  # seeded: repeatable
    # identical fields: every resample is the same set, so the interval is the AP itself
    same = image_matches([dets((*A, 0.9, 0))] * 10, [truth((*A, 0))] * 10, 0)
    assert ap_interval(same) == pytest.approx((1.0, 1.0))
    assert ap_interval(same[:1]) is None  # one image: no interval


def test_no_truth_is_nan_and_no_prediction_is_zero() -> None:
    t = [truth((*A, 0))]
    assert math.isnan(ap_per_class([dets((*A, 0.9, 1))], t, {"b": 1})["b"])
    assert ap_per_class([dets()], t, {"a": 0})["a"] == 0.0


def test_ignore_regions_and_unsupervised_classes_are_not_counted() -> None:
    fp_in_region = dets((*A, 0.9, 0), (100, 100, 108, 108, 0.95, 0))
    region = np.array([[95, 95, 120, 120]])
    assert ap_per_class([fp_in_region], [truth((*A, 0))], {"a": 0})["a"] < 1.0
    assert ap_per_class([fp_in_region], [truth((*A, 0), ignore=region)], {"a": 0})[
        "a"
    ] == pytest.approx(1.0)
    # a region for class 1 only does not excuse a class-0 prediction
    other = truth((*A, 0), ignore=region, ignore_labels=np.array([1]))
    assert ap_per_class([fp_in_region], [other], {"a": 0})["a"] < 1.0
    # class 0 unsupervised in the second image: its (unlabelled) cells are not false positives
    p = [dets((*A, 0.9, 0)), dets((*B, 0.95, 0))]
    t = [truth((*A, 0)), truth(unsupervised=frozenset({0}))]
    curve = match_class(p, t, 0)
    assert (curve.n_images, curve.n_gt, len(curve.scores)) == (1, 1, 1)
    assert ap_per_class(p, t, {"a": 0})["a"] == pytest.approx(1.0)


def test_operating_point_counts_at_a_threshold() -> None:
    t = [truth((*A, 0), (*B, 0))]
    p = [dets((*A, 0.9, 0), (*FAR, 0.8, 0), (*B, 0.7, 0))]
    point = at_threshold(match_class(p, t, 0), 0.75, "a")
    assert (point.tp, point.fp, point.fn) == (1, 1, 1)
    assert point.precision == 0.5 and point.recall == 0.5
    point = at_threshold(match_class(p, t, 0), 0.7, "a")
    assert (point.tp, point.fp, point.fn) == (2, 1, 0)


def _coco_case(seed: int) -> tuple[dict, list[dict], list[ImageDetections], list[ImageTruth]]:
    rng = np.random.default_rng(seed)
    images, anns, results, preds, truths = [], [], [], [], []
    for img_id in range(1, 7):
        images.append({"id": img_id, "width": 200, "height": 200, "file_name": f"{img_id}.png"})
        gt_boxes, gt_labels, ig_boxes, ig_labels = [], [], [], []
        for _ in range(int(rng.integers(0, 9))):
            x, y = rng.uniform(0, 160, 2)
            w, h = rng.uniform(8, 40, 2)
            gt_boxes.append((x, y, x + w, y + h))
            gt_labels.append(int(rng.integers(0, 3)))
        if rng.random() < 0.5:  # a crowd region of one class
            x, y = rng.uniform(0, 120, 2)
            ig_boxes.append((x, y, x + 60, y + 60))
            ig_labels.append(int(rng.integers(0, 3)))
        for (x1, y1, x2, y2), k in zip(gt_boxes, gt_labels):
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": k + 1, "iscrowd": 0,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)})  # fmt: skip
        for (x1, y1, x2, y2), k in zip(ig_boxes, ig_labels):
            anns.append({"id": len(anns) + 1, "image_id": img_id, "category_id": k + 1, "iscrowd": 1,
                         "bbox": [x1, y1, x2 - x1, y2 - y1], "area": (x2 - x1) * (y2 - y1)})  # fmt: skip
        d_boxes, d_scores, d_labels = [], [], []
        for (x1, y1, x2, y2), k in zip(gt_boxes, gt_labels):  # jittered copies of the truth
            if rng.random() < 0.8:
                j = rng.normal(0, 3, 4)
                d_boxes.append((x1 + j[0], y1 + j[1], x2 + j[2] + 1, y2 + j[3] + 1))
                d_labels.append(k if rng.random() < 0.9 else int(rng.integers(0, 3)))
        for _ in range(int(rng.integers(0, 6))):  # spurious boxes, some inside crowd regions
            x, y = rng.uniform(0, 170, 2)
            w, h = rng.uniform(6, 30, 2)
            d_boxes.append((x, y, x + w, y + h))
            d_labels.append(int(rng.integers(0, 3)))
        for (x1, y1, _, _), k in zip(ig_boxes, ig_labels):  # unmatched boxes in a crowd
            for _ in range(2):
                x, y = x1 + rng.uniform(0, 30), y1 + rng.uniform(0, 30)
                d_boxes.append((x, y, x + 20, y + 20))
                d_labels.append(k)
        d_scores = list(rng.uniform(0.05, 1.0, len(d_boxes)))
        for (x1, y1, x2, y2), s, k in zip(d_boxes, d_scores, d_labels):
            results.append({"image_id": img_id, "category_id": k + 1, "score": float(s),
                            "bbox": [x1, y1, x2 - x1, y2 - y1]})  # fmt: skip
        preds.append(
            ImageDetections(
                np.array(d_boxes).reshape(-1, 4), np.array(d_scores), np.array(d_labels)
            )
        )
        truths.append(ImageTruth(np.array(gt_boxes).reshape(-1, 4), np.array(gt_labels),
                                 np.array(ig_boxes).reshape(-1, 4), np.array(ig_labels, int)))  # fmt: skip
    gt = {"images": images, "annotations": anns,
          "categories": [{"id": k + 1, "name": f"c{k}"} for k in range(3)]}  # fmt: skip
    return gt, results, preds, truths


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ap50_and_ap50_95_equal_pycocotools(seed: int) -> None:
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, results, preds, truths = _coco_case(seed)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.maxDets = [1, 10, 1000]
        ev.evaluate()
        ev.accumulate()
    ours = coco_ap(preds, truths, {f"c{k}": k for k in range(3)})
    precision = ev.eval["precision"]  # [iou, recall, class, area, maxdets]
    for k in range(3):
        p = precision[:, :, k, 0, 2]
        if (p < 0).all():
            assert math.isnan(ours[f"c{k}"].ap50)
            continue
        assert ours[f"c{k}"].ap50 == pytest.approx(p[0].mean(), abs=1e-6)
        assert ours[f"c{k}"].ap50_95 == pytest.approx(p.mean(), abs=1e-6)


def test_tuning_picks_the_f1_optimum_and_the_fp_target() -> None:
    # 4 truths; TP at 0.9, 0.8, 0.6 and FP at 0.7, 0.3, 0.2: F1 peaks (0.75) for t in (0.3, 0.6]
    t = [truth((*A, 0), (*B, 0), (*C, 0), (60, 60, 70, 70, 0))] + [truth()] * 9
    p = [dets((*A, 0.9, 0), (*B, 0.8, 0), (*C, 0.6, 0), (*FAR, 0.7, 0),
              (200, 200, 210, 210, 0.3, 0), (300, 300, 310, 310, 0.2, 0))] + [dets()] * 9  # fmt: skip
    curve = match_class(p, t, 0)
    f1 = tune_threshold(curve, TuningRule("f1"), "a")
    assert f1 is not None and f1.threshold == 0.6 and f1.point.f1 == pytest.approx(0.75)
    # at most 0.1 false positives per tile over 10 tiles -> at most 1 FP: t > 0.3; all 3 TPs
    # are kept up to 0.6, the highest such threshold (0.31 would keep as many, no fewer FPs)
    fp = tune_threshold(curve, TuningRule("recall_at_fp", 0.1), "a")
    assert fp is not None and fp.threshold == 0.6 and fp.feasible
    assert (fp.point.tp, fp.point.fp) == (3, 1)
    # an impossible target is flagged
    p_bad = [dets(*[(400 + 20 * i, 0, 410 + 20 * i, 10, 0.99, 0) for i in range(3)], (*A, 0.99, 0))]
    bad = tune_threshold(match_class(p_bad, [truth((*A, 0))], 0), TuningRule("recall_at_fp", 0.5))
    assert bad is not None and not bad.feasible
    assert tune_threshold(match_class([dets()], [truth()], 0)) is None


def _host(
    box: tuple[float, ...], *cells: tuple[str, tuple[float, ...]], score: float = 1.0
) -> HostBox:
    return HostBox(
        box, tuple(EngulfedBox(t, b, 0.9 - 0.1 * i) for i, (t, b) in enumerate(cells)), score
    )  # type: ignore[arg-type]


def test_hemophagocyte_sensitivity_false_positives_and_engulfed_types() -> None:
    c1, c2, c3 = (10, 10, 20, 20), (30, 10, 40, 20), (10, 30, 24, 44)
    a_true = _host((0, 0, 60, 60), ("rbc", c1), ("rbc", c2), ("nucleated", c3))
    # predicted: rbc right, the nucleated cell typed granulocyte (a nucleated subtype: right),
    # the second rbc called nucleated (wrong)
    a_pred = _host((1, 1, 61, 61), ("rbc", c1), ("granulocyte", c3), ("nucleated", c2), score=0.9)
    b_true = _host((100, 0, 150, 50), ("platelet", (110, 10, 116, 16)))
    b_pred = _host((100, 0, 150, 52), ("platelet", (110, 10, 116, 16)), score=0.8)
    fp_on_macrophage = _host((200, 200, 260, 260), score=0.7)
    tile1 = HostTile((a_true, b_true), (a_pred, b_pred, fp_on_macrophage),
                     true_macrophages=np.array([[200, 200, 260, 262]]))  # fmt: skip
    c_true = _host((0, 0, 50, 50), ("rbc", c1))
    tile2 = HostTile((c_true,), (), pred_macrophages=np.array([[0, 0, 50, 51]]))
    m = hemophagocyte_metrics([tile1, tile2])
    assert (m.true, m.tp, m.fp, m.fn) == (3, 2, 1, 1)
    assert m.sensitivity == pytest.approx(2 / 3) and m.precision == pytest.approx(2 / 3)
    assert m.fp_per_tile == pytest.approx(0.5)
    assert m.fp_on_true_macrophages == 1 and m.missed_called_macrophage == 1
    assert m.engulfed_exact == pytest.approx(0.5)  # B exact, A not (2 rbc + 1 nuc vs 1 + 2)
    assert (m.cell_pairs, m.cell_pairs_same_type) == (4, 3)
    assert m.cell_type_accuracy == pytest.approx(0.75) and m.cell_recall == pytest.approx(1.0)
    assert m.cell_confusion["rbc"] == {"rbc": 1, "nucleated": 1, "platelet": 0, "missed": 0}
    assert m.to_dict()["engulfed_exact_n"] == "1/2"
    # A and B found in field 0, one false call there, nothing called in field 1
    assert m.call_outcomes == ("0:0", "0:1", "0:false")
    assert m.to_dict()["call_outcomes"] == ["0:0", "0:1", "0:false"]


def test_hemophagocyte_in_an_ignore_region_is_not_a_false_positive() -> None:
    tile = HostTile((), (_host((0, 0, 50, 50)),), ignore=np.array([[0, 0, 60, 60]]))
    m = hemophagocyte_metrics([tile])
    assert (m.fp, m.predicted) == (0, 0) and m.precision is None
    assert m.call_outcomes == ()


def test_count_agreement_pairs_bias_and_limits() -> None:
    samples = [
        SampleCount("s1", 2, 100, 3, 100),  # 20 vs 30
        SampleCount("s2", 1, 50, 1, 40),  # 20 vs 25
        SampleCount("s3", 0, 0, 1, 10),  # no true denominator: not a pair
    ]
    ca = count_agreement(samples)
    assert [p[0] for p in ca.pairs] == ["s1", "s2"]
    assert ca.mean_abs_difference == pytest.approx(7.5) and ca.bias == pytest.approx(7.5)
    sd = float(np.std([10.0, 5.0], ddof=1))
    assert ca.sd == pytest.approx(sd)
    assert ca.limits == pytest.approx((7.5 - 1.96 * sd, 7.5 + 1.96 * sd))
    single = count_agreement(samples[:1])
    assert single.bias == pytest.approx(10.0) and single.limits is None
    assert count_agreement([]).bias is None


def test_nested_pairs_counts_duplicates_and_boxes_inside_boxes() -> None:
    cell = (0, 0, 40, 40)
    nucleus_inside = (10, 10, 30, 30)  # wholly inside the cell: nested
    shifted_twin = (8, 0, 48, 40)  # the same cell boxed again, 80% overlap: duplicate
    neighbour = (30, 0, 70, 40)  # touches the cell over 10 of its 40 px: 25%, not nested
    far = (100, 100, 140, 140)
    assert nested_pairs(np.array([cell, far])) == 0
    assert nested_pairs(np.array([cell, neighbour])) == 0
    assert nested_pairs(np.array([cell, nucleus_inside])) == 1
    # cell-nucleus, cell-twin, twin-nucleus (the nucleus is inside the twin too), twin-neighbour
    # (the neighbour overlaps the twin over 18 of 40 px: 45%, not nested)
    assert nested_pairs(np.array([cell, nucleus_inside, shifted_twin, neighbour, far])) == 3
    half = (20, 0, 60, 40)  # exactly half of the cell: not more than half
    assert nested_pairs(np.array([cell, half])) == 0
    assert nested_pairs(np.array([cell, half]), min_overlap=0.4) == 1
    assert nested_pairs(np.array([cell, (5, 5, 5, 30)])) == 0  # a box without area
    assert nested_pairs(np.zeros((0, 4))) == 0


def test_records_refuse_bad_shapes() -> None:
    with pytest.raises(ValueError, match=r"\[N, 4\]"):
        ImageTruth(np.zeros((2, 3)), np.zeros(2))
    with pytest.raises(ValueError, match="entries"):
        ImageDetections(np.zeros((2, 4)), np.zeros(3), np.zeros(2))
