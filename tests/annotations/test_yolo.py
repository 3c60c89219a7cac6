"""YOLO txt reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hemoscan.annotations import AnnotationError, AnnotationWarning, DatasetSpec, read_yolo
from tests.annotations.util import blank, by_name, write_text

CMAP = {"0": "nucleated", "1": "rbc", "2": "platelet"}


def _layout(root: Path) -> None:
    blank(root / "images" / "train" / "a.jpg", 100, 50)
    blank(root / "images" / "train" / "b.png", 40, 40)
    blank(root / "images" / "train" / "sub" / "c.png", 20, 10)
    write_text(root / "labels" / "train" / "a.txt", "1 0.5 0.5 0.2 0.4\n\n0 0.1 0.1 0.2 0.2\n")
    write_text(root / "labels" / "train" / "sub" / "c.txt", "2 0.5 0.5 0.5 0.5\n")
    write_text(root / "labels" / "train" / "classes.txt", "WBC\nRBC\nPC\n")


def test_ultralytics_layout_boxes_stray_and_missing(tmp_path: Path) -> None:
    _layout(tmp_path)
    with pytest.warns(AnnotationWarning) as caught:
        recs = read_yolo(DatasetSpec("yolo", tmp_path, CMAP, split="train"))
    messages = [str(w.message) for w in caught]
    assert any("skipped 1 .txt files" in m and "classes.txt" in m for m in messages)
    assert any("1 images have no label file" in m and "b.png" in m for m in messages)
    r = by_name(recs)
    assert set(r) == {"a.jpg", "b.png", "c.png"}
    a = r["a.jpg"]
    assert (a.width, a.height) == (100, 50) and a.labels == ("rbc", "nucleated")
    np.testing.assert_allclose(a.boxes, [[40, 15, 60, 35], [0, 0, 20, 10]], atol=1e-4)
    assert a.source == tmp_path / "labels" / "train" / "a.txt"
    assert a.supervised == {"nucleated", "rbc", "platelet"} and a.parents == (-1, -1)
    assert len(r["b.png"]) == 0 and r["b.png"].source is None
    np.testing.assert_allclose(r["c.png"].boxes, [[5, 2.5, 15, 7.5]])


def test_labels_beside_images_and_names_from_classes_txt(tmp_path: Path) -> None:
    blank(tmp_path / "x.png", 10, 10)
    write_text(tmp_path / "x.txt", "0 0.5 0.5 0.4 0.4\n1 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2\n")
    write_text(tmp_path / "classes.txt", "WBC\nrbc\nPC\n")
    with pytest.warns(AnnotationWarning, match="classes.txt"):
        (rec,) = read_yolo(DatasetSpec("yolo", tmp_path, {"WBC": "nucleated", "PC": "ignore"}))
    # WBC by name, rbc by its own (hemoscan) name, PC -> ignore region
    assert rec.labels == ("nucleated", "rbc")
    np.testing.assert_allclose(rec.ignore, [[4, 4, 6, 6]])
    assert rec.supervised == {"nucleated", "rbc"}


def test_polygon_lines_and_drop(tmp_path: Path) -> None:
    blank(tmp_path / "images" / "x.png", 10, 20)
    write_text(tmp_path / "labels" / "x.txt", "1 0.1 0.1 0.5 0.1 0.3 0.6\n0 0.5 0.5 0.1 0.1\n")
    (rec,) = read_yolo(DatasetSpec("yolo", tmp_path, {"0": "drop", "1": "rbc"}))
    assert rec.labels == ("rbc",) and rec.ignore.shape == (0, 4)
    np.testing.assert_allclose(rec.boxes, [[1, 2, 5, 12]], atol=1e-5)


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("1 0.5 0.5 0.2", "got 4 fields"),
        ("1 0.5 0.5 0.2 0.2 0.9", "got 6 fields"),
        ("one 0.5 0.5 0.2 0.2", "non-numeric"),
        ("1.5 0.5 0.5 0.2 0.2", "not a non-negative integer"),
        ("1 50 25 10 10", "look like pixels"),
        ("1 0.5 0.5 0 0.2", "must be positive"),
        ("7 0.5 0.5 0.2 0.2", "source class '7'"),
    ],
)
def test_malformed_lines_name_file_and_line(tmp_path: Path, line: str, match: str) -> None:
    blank(tmp_path / "images" / "x.png", 10, 10)
    write_text(tmp_path / "labels" / "x.txt", f"1 0.5 0.5 0.2 0.2\n{line}\n")
    with pytest.raises(AnnotationError, match=match) as e:
        read_yolo(DatasetSpec("yolo", tmp_path, CMAP))
    assert f"{tmp_path / 'labels' / 'x.txt'}:2" in str(e.value)


def test_boxes_slightly_outside_are_clipped_with_one_warning(tmp_path: Path) -> None:
    blank(tmp_path / "images" / "x.png", 100, 100)
    write_text(tmp_path / "labels" / "x.txt", "1 0.02 0.5 0.1 0.1\n1 0.5 0.5 0.1 0.1\n")
    with pytest.warns(AnnotationWarning, match="1 clipping notes"):
        (rec,) = read_yolo(DatasetSpec("yolo", tmp_path, CMAP))
    np.testing.assert_allclose(rec.boxes[0], [0, 45, 7, 55], atol=1e-4)


def test_data_yaml_names(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    blank(tmp_path / "images" / "x.png", 10, 10)
    write_text(tmp_path / "labels" / "x.txt", "0 0.5 0.5 0.2 0.2\n")
    write_text(tmp_path / "data.yaml", "names:\n  0: Platelet\n")
    (rec,) = read_yolo(DatasetSpec("yolo", tmp_path, {"Platelet": "platelet"}))
    assert rec.labels == ("platelet",)


def test_no_images_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    with pytest.raises(AnnotationError, match="no images"):
        read_yolo(DatasetSpec("yolo", tmp_path, CMAP))
