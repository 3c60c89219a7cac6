"""AnnotatedImage, DatasetSpec and parent inference."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hemoscan.annotations import (
    AnnotatedImage,
    AnnotationError,
    AnnotationWarning,
    DatasetSpec,
    infer_parents,
    read_dataset,
)
from hemoscan.errors import HemoscanError


def _rec(
    boxes, labels, parents=None, ignore=(), supervised=("rbc",), w=100, h=80
) -> AnnotatedImage:
    return AnnotatedImage(
        Path("x.png"),
        w,
        h,
        np.array(boxes, np.float32).reshape(-1, 4),
        tuple(labels),
        tuple(parents if parents is not None else [-1] * len(labels)),
        np.array(ignore, np.float32).reshape(-1, 4),
        frozenset(supervised),
    )


def test_error_is_a_hemoscan_error() -> None:
    assert issubclass(AnnotationError, HemoscanError)


def test_record_is_read_only_and_checks_lengths() -> None:
    r = _rec([[1, 2, 3, 4]], ["rbc"])
    assert r.boxes.dtype == np.float32 and r.boxes.shape == (1, 4) and r.ignore.shape == (0, 4)
    with pytest.raises(ValueError):
        r.boxes[0, 0] = 5
    with pytest.raises(AnnotationError, match="1 boxes but 2 labels"):
        _rec([[1, 2, 3, 4]], ["rbc", "rbc"], parents=[-1])


def test_validate_clips_with_warning_and_removes_outside_boxes() -> None:
    r = _rec(
        [[-0.5, 0, 10, 80.5], [-20, 5, 30, 10], [200, 5, 210, 10]],
        ["rbc"] * 3,
        ignore=[[90, 70, 150, 90]],
    )
    with pytest.warns(AnnotationWarning) as caught:
        v = r.validate()
    assert [str(w.message) for w in caught] == [
        "x.png: 1 boxes and 1 ignore regions extend beyond the 100x80 image by more than 1 px;"
        " clipped",
        "x.png: 1 boxes and 0 ignore regions lie wholly outside the 100x80 image; removed",
    ]
    assert v.boxes.tolist() == [[0, 0, 10, 80], [0, 5, 30, 10]]
    assert v.ignore.tolist() == [[90, 70, 100, 80]]
    small = _rec([[-0.5, 0, 10, 80.5]], ["rbc"])
    assert small.checked()[1] == []  # within the 1 px tolerance: silent


@pytest.mark.parametrize(
    ("boxes", "labels", "parents", "match"),
    [
        ([[5, 5, 5, 9]], ["rbc"], [-1], "empty or inverted"),
        ([[5, 5, 4, 9]], ["rbc"], [-1], "empty or inverted"),
        ([[5, 5, np.nan, 9]], ["rbc"], [-1], "non-finite"),
        ([[5, 5, 9, 9]], ["wbc"], [-1], "unknown labels"),
        ([[5, 5, 9, 9], [6, 6, 7, 7]], ["rbc", "engulfed_rbc"], [-1, 0], "not a hemophagocyte"),
        ([[5, 5, 9, 9], [6, 6, 7, 7]], ["hemophagocyte", "rbc"], [-1, 0], "not engulfed"),
    ],
)
def test_validate_errors(boxes, labels, parents, match) -> None:
    with pytest.raises(AnnotationError, match=match):
        _rec(boxes, labels, parents).validate()


def test_subset_renumbers_parents() -> None:
    r = _rec(
        [[0, 0, 50, 50], [60, 0, 99, 50], [10, 10, 20, 20], [70, 10, 80, 20]],
        ["rbc", "hemophagocyte", "engulfed_rbc", "engulfed_rbc"],
        [-1, -1, -1, 1],
    )
    s = r.subset([False, True, True, True])
    assert s.labels == ("hemophagocyte", "engulfed_rbc", "engulfed_rbc") and s.parents == (
        -1,
        -1,
        0,
    )
    assert r.subset([0, 2, 3]).parents == (-1, -1, -1)  # host removed


def test_helpers_and_dict_round_trip() -> None:
    r = _rec([[0, 0, 5, 5], [1, 1, 3, 3]], ["rbc", "platelet"], supervised=("rbc",))
    assert r.counts() == {"rbc": 1, "platelet": 1}
    assert r.label_indices(("platelet", "rbc")).tolist() == [1, 0]
    assert r.supervised_mask(("rbc", "platelet")).tolist() == [True, False]
    back = AnnotatedImage.from_dict(r.to_dict())
    assert back.to_dict() == r.to_dict()
    with pytest.raises(AnnotationError, match="not in classes"):
        r.label_indices(("rbc",))


def test_infer_parents_picks_the_smallest_containing_host() -> None:
    boxes = np.array(
        [
            [0, 0, 100, 100],
            [20, 20, 60, 60],
            [30, 30, 40, 40],
            [90, 90, 99, 99],
            [200, 200, 210, 210],
        ],
        np.float32,
    )
    labels = ["hemophagocyte", "hemophagocyte", "engulfed_rbc", "engulfed_platelet", "engulfed_rbc"]
    assert infer_parents(boxes, labels, [-1] * 5) == (-1, -1, 1, 0, -1)
    assert infer_parents(boxes, labels, [-1, -1, 0, -1, -1])[2] == 0  # explicit kept


def test_spec_from_dict_defaults_and_errors(tmp_path: Path) -> None:
    s = DatasetSpec.from_dict(
        {"format": "yolo", "root": "data", "class_map": {0: "rbc", "1": "drop"}}, tmp_path
    )
    assert s.root == tmp_path / "data" and s.class_map == {"0": "rbc", "1": "drop"}
    assert s.supervised == "all" and s.resolve_supervised({"platelet"}) == {"rbc", "platelet"}
    assert DatasetSpec.from_dict(s.to_dict()) == s
    explicit = DatasetSpec("masks", tmp_path, {"mask": "nucleated"}, supervised=[])
    assert explicit.resolve_supervised({"nucleated"}) == frozenset()
    with pytest.raises(AnnotationError, match="unknown keys"):
        DatasetSpec.from_dict({"format": "yolo", "root": "x", "clas_map": {}})
    with pytest.raises(AnnotationError, match="format"):
        DatasetSpec.from_dict({"format": "csv", "root": "x"})
    with pytest.raises(AnnotationError, match="not hemoscan classes"):
        DatasetSpec("yolo", tmp_path, {"0": "wbc"})
    with pytest.raises(AnnotationError, match="supervised classes"):
        DatasetSpec("yolo", tmp_path, supervised=["wbc"])
    with pytest.raises(AnnotationError, match="does not exist"):
        read_dataset({"format": "yolo", "root": str(tmp_path / "absent")})


def test_unknown_options_are_refused(tmp_path: Path) -> None:
    with pytest.raises(AnnotationError, match="unknown masks options"):
        read_dataset(DatasetSpec("masks", tmp_path, {"mask": "rbc"}, options={"min_aera": 3}))
    with pytest.raises(AnnotationError, match="bad voc options"):
        read_dataset(DatasetSpec("voc", tmp_path, options={"difficult": "maybe"}))
