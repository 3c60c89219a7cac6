import numpy as np

from hemoscan.inference.postprocess import suppress_duplicates, to_detections

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
