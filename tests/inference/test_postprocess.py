import numpy as np
import pytest
import torch

from hemoscan.inference.postprocess import group_floors, suppress_duplicates, to_detections

CLASSES = (
    "rbc",
    "platelet",
    "nucleated",
    "macrophage",
    "hemophagocyte",
    "engulfed_rbc",
    "engulfed_nucleated",
)


def test_engulfed_cells_join_the_hemophagocyte_that_holds_them() -> None:
    boxes = np.array(
        [
            [0, 0, 100, 100],  # hemophagocyte
            [200, 200, 300, 300],  # hemophagocyte, weaker
            [10, 10, 30, 30],  # engulfed rbc inside the first
            [40, 40, 70, 70],  # engulfed nucleated inside the first
            [220, 220, 240, 240],  # engulfed rbc inside the second
            [500, 500, 520, 520],  # engulfed rbc inside no host: dropped
            [120, 120, 140, 140],  # free rbc
        ],
        np.float32,
    )
    scores = np.array([0.9, 0.6, 0.8, 0.7, 0.5, 0.9, 0.95], np.float32)
    labels = np.array([4, 4, 5, 6, 5, 5, 0])
    dets = to_detections(boxes, scores, labels, CLASSES)
    assert [d.label for d in dets] == ["hemophagocyte", "hemophagocyte", "rbc"]
    assert dets[0].engulfed == {"rbc": 1, "nucleated": 1, "platelet": 0}
    assert dets[1].engulfed == {"rbc": 1, "nucleated": 0, "platelet": 0}
    assert dets[2].engulfed is None


def test_macrophage_and_hemophagocyte_calls_of_one_host_compete() -> None:
    boxes = np.array(
        [[0, 0, 100, 100], [2, 2, 101, 99], [0, 0, 100, 100], [5, 5, 25, 25]], np.float32
    )
    scores = np.array([0.6, 0.8, 0.7, 0.9], np.float32)
    labels = np.array([3, 4, 2, 0])  # macrophage, hemophagocyte, nucleated, rbc
    keep = suppress_duplicates(boxes, scores, labels, CLASSES, iou=0.5)
    assert sorted(keep.tolist()) == [1, 2, 3]


def test_nested_and_seam_duplicates_go_by_intersection_over_the_smaller_box() -> None:
    boxes = np.array(
        [
            [0, 0, 60, 60],  # nucleated
            [10, 10, 40, 40],  # nucleated nested in it (IoU 0.25, IoS 1): a duplicate
            [50, 0, 110, 60],  # nucleated neighbour touching the first (IoS 0.17): kept
            [200, 0, 240, 40],  # nucleated seen by one window...
            [214, 0, 250, 38],  # ...and by the next, shifted (IoU 0.47, IoS 0.68)
            [300, 0, 340, 40],  # rbc
            [306, 6, 330, 30],  # rbc nested in it: rbc have no IoS limit here, kept
        ],
        np.float32,
    )
    scores = np.array([0.9, 0.8, 0.85, 0.7, 0.6, 0.9, 0.8], np.float32)
    labels = np.array([2, 2, 2, 2, 2, 0, 0])
    plain = suppress_duplicates(boxes, scores, labels, CLASSES, iou=0.5)
    assert sorted(plain.tolist()) == [0, 1, 2, 3, 4, 5, 6]
    keep = suppress_duplicates(boxes, scores, labels, CLASSES, iou=0.5, ios={"nucleated": 0.5})
    assert sorted(keep.tolist()) == [0, 2, 3, 5, 6]


def _random_boxes(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` boxes of 4-60 px in a 1024 px field, clustered so that many overlap, with
    distinct scores and 5 groups."""
    centres = rng.uniform(0, 1024, (max(1, n // 4), 2))[rng.integers(0, max(1, n // 4), n)]
    centres += rng.normal(0, 6, (n, 2))
    sizes = rng.uniform(4, 60, (n, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], 1).astype(np.float32)
    scores = rng.permutation(n).astype(np.float32) / n + np.float32(0.001)
    return boxes, scores, rng.integers(0, 5, n)


@pytest.mark.parametrize("n", [0, 1, 7, 300, 999, 1000, 1001, 2500])
def test_nms_keeps_exactly_what_torchvision_keeps(n: int) -> None:
    from torchvision import ops

    from hemoscan.inference.postprocess import batched_nms, box_iou, nms

    rng = np.random.default_rng(n)
    boxes, scores, groups = _random_boxes(rng, n)
    for iou in (0.3, 0.5, 0.7):
        tb, ts, tg = torch.as_tensor(boxes), torch.as_tensor(scores), torch.as_tensor(groups)
        np.testing.assert_array_equal(nms(boxes, scores, iou), ops.nms(tb, ts, iou).numpy())
        np.testing.assert_array_equal(
            batched_nms(boxes, scores, groups, iou), ops.batched_nms(tb, ts, tg, iou).numpy()
        )
    if n:
        np.testing.assert_array_equal(box_iou(boxes, boxes[: n // 2 + 1]),
                                      ops.box_iou(tb, tb[: n // 2 + 1]).numpy())  # fmt: skip


def test_a_host_class_is_decoded_down_to_its_nms_group_lowest_threshold() -> None:
    thresholds = np.array([0.45, 0.47, 0.55, 0.65, 0.45, 0.44, 0.56], np.float32)
    floors = group_floors(thresholds, CLASSES)
    assert floors.tolist() == pytest.approx([0.45, 0.47, 0.55, 0.45, 0.45, 0.44, 0.56])
    assert thresholds[3] == np.float32(0.65)  # the thresholds themselves are left alone
