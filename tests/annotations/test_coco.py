"""COCO JSON reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hemoscan.annotations import AnnotationError, AnnotationWarning, DatasetSpec, read_coco
from tests.annotations.util import blank, by_name, write_json


def _coco(**extra) -> dict:
    d = {
        "images": [
            {"id": 1, "file_name": "sub/a.png", "width": 64, "height": 48},
            {"id": 2, "file_name": "b.png", "width": 32, "height": 32},
        ],
        "categories": [
            {"id": 1, "name": "RBC"},
            {"id": 2, "name": "WBC"},
            {"id": 7, "name": "junk"},
        ],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 5, 4, 6], "iscrowd": 0},
            {"id": 2, "image_id": 1, "category_id": 2, "bbox": [20, 20, 30, 20], "iscrowd": 1},
            {"id": 3, "image_id": 1, "category_id": 7, "bbox": [1, 1, 2, 2]},
            {"id": 4, "image_id": 1, "category_id": 2, "segmentation": [[2, 3, 8, 3, 5, 9]]},
        ],
    }
    d.update(extra)
    return d


CMAP = {"RBC": "rbc", "WBC": "nucleated", "7": "drop"}


def _setup(root: Path, coco: dict) -> DatasetSpec:
    blank(root / "images" / "sub" / "a.png", 64, 48)
    blank(root / "images" / "b.png", 32, 32)
    write_json(root / "annotations" / "instances_train.json", coco)
    return DatasetSpec("coco", root, CMAP, split="train", images=Path("images"))


def test_boxes_crowd_ignore_drop_and_empty_images(tmp_path: Path) -> None:
    recs = read_coco(_setup(tmp_path, _coco()))
    assert [r.image_path.name for r in recs] == ["a.png", "b.png"]
    a, b = recs
    assert a.labels == ("rbc", "nucleated")
    np.testing.assert_allclose(a.boxes, [[10, 5, 14, 11], [2, 3, 8, 9]])
    np.testing.assert_allclose(a.ignore, [[20, 20, 50, 40]])  # iscrowd -> ignore region
    assert len(b) == 0 and b.supervised == {"rbc", "nucleated"}


def test_size_mismatch_and_bad_references(tmp_path: Path) -> None:
    bad = _coco()
    bad["images"][1]["width"] = 33
    with pytest.raises(AnnotationError, match="JSON says 33x32"):
        read_coco(_setup(tmp_path, bad))
    bad = _coco()
    bad["annotations"].append({"id": 9, "image_id": 5, "category_id": 1, "bbox": [1, 1, 2, 2]})
    with pytest.raises(AnnotationError, match="annotation 9: image_id 5"):
        read_coco(_setup(tmp_path, bad))
    bad = _coco()
    bad["annotations"][0]["bbox"] = [1, 1, 0, 2]
    with pytest.raises(AnnotationError, match="instances_train.json: annotation 1: bbox"):
        read_coco(_setup(tmp_path, bad))


def test_missing_images_error_or_skip(tmp_path: Path) -> None:
    coco = _coco()
    coco["images"].append({"id": 3, "file_name": "gone.png"})
    spec = _setup(tmp_path, coco)
    with pytest.raises(AnnotationError, match="gone.png not found"):
        read_coco(spec)
    skip = DatasetSpec(
        "coco",
        tmp_path,
        CMAP,
        split="train",
        images=Path("images"),
        options={"missing_images": "skip"},
    )
    with pytest.warns(AnnotationWarning, match="skipped 1 images"):
        assert len(read_coco(skip)) == 2


def test_json_file_as_root_and_unmapped_class(tmp_path: Path) -> None:
    spec = _setup(tmp_path, _coco())
    json_root = DatasetSpec(
        "coco",
        spec.root / "annotations" / "instances_train.json",
        {"RBC": "rbc", "WBC": "nucleated"},
        images=tmp_path / "images",
    )
    with pytest.raises(AnnotationError, match="source class 'junk' / '7' is not in the class_map"):
        read_coco(json_root)
    assert len(by_name(read_coco(spec))) == 2
