"""Pascal VOC XML reader."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hemoscan.annotations import AnnotationError, AnnotationWarning, DatasetSpec, read_voc
from tests.annotations.util import blank, by_name, write_text


def _obj(name: str, box: tuple[float, ...], difficult: int = 0) -> str:
    x1, y1, x2, y2 = box
    return (
        f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>"
        f"<xmin>{x1}</xmin><ymin>{y1}</ymin><xmax>{x2}</xmax><ymax>{y2}</ymax></bndbox></object>"
    )


def _xml(filename: str, w: int, h: int, *objects: str) -> str:
    return (
        f"<annotation><filename>{filename}</filename><size><width>{w}</width>"
        f"<height>{h}</height><depth>3</depth></size>{''.join(objects)}</annotation>"
    )


def _setup(root: Path) -> None:
    blank(root / "JPEGImages" / "a.jpg", 60, 40)
    blank(root / "JPEGImages" / "b.jpg", 30, 30)
    blank(root / "JPEGImages" / "c.jpg", 30, 30)
    write_text(
        root / "Annotations" / "a.xml",
        _xml("a.jpg", 60, 40, _obj("RBC", (1, 1, 10, 20)), _obj("WBC", (21, 11, 40, 30), 1)),
    )
    write_text(
        root / "Annotations" / "b.xml", _xml("renamed.jpg", 30, 30, _obj("Platelets", (5, 5, 8, 8)))
    )


CMAP = {"RBC": "rbc", "WBC": "nucleated", "Platelets": "platelet"}


def test_one_based_conversion_difficult_and_unlabelled(tmp_path: Path) -> None:
    _setup(tmp_path)
    with pytest.warns(AnnotationWarning, match="1 images have no XML file.*c.jpg"):
        r = by_name(read_voc(DatasetSpec("voc", tmp_path, CMAP)))
    a = r["a.jpg"]
    # 1-based inclusive (1..10) -> 0-based edges [0, 10)
    np.testing.assert_allclose(a.boxes, [[0, 0, 10, 20]])
    np.testing.assert_allclose(a.ignore, [[20, 10, 40, 30]])  # difficult -> ignore
    assert a.labels == ("rbc",) and a.source == tmp_path / "Annotations" / "a.xml"
    np.testing.assert_allclose(r["b.jpg"].boxes, [[4, 4, 8, 8]])  # image found by XML stem
    assert len(r["c.jpg"]) == 0


def test_difficult_keep_and_zero_based_option(tmp_path: Path) -> None:
    _setup(tmp_path)
    spec = DatasetSpec("voc", tmp_path, CMAP, options={"difficult": "keep", "one_based": False})
    with pytest.warns(AnnotationWarning):
        a = by_name(read_voc(spec))["a.jpg"]
    assert a.labels == ("rbc", "nucleated") and a.ignore.shape == (0, 4)
    np.testing.assert_allclose(a.boxes, [[1, 1, 10, 20], [21, 11, 40, 30]])


def test_imagesets_split_and_errors(tmp_path: Path) -> None:
    _setup(tmp_path)
    write_text(tmp_path / "ImageSets" / "Main" / "train.txt", "a\n")
    (rec,) = read_voc(DatasetSpec("voc", tmp_path, CMAP, split="train"))
    assert rec.image_path.name == "a.jpg"
    write_text(tmp_path / "Annotations" / "a.xml", _xml("a.jpg", 61, 40))
    with pytest.raises(AnnotationError, match="a.xml: <size> says 61x40"):
        read_voc(DatasetSpec("voc", tmp_path, CMAP, split="train"))
    write_text(
        tmp_path / "Annotations" / "a.xml", _xml("a.jpg", 60, 40, _obj("RBC", (1, 1, "x", 3)))
    )
    with pytest.raises(AnnotationError, match="a.xml: object 1: <xmax>"):
        read_voc(DatasetSpec("voc", tmp_path, CMAP, split="train"))
    write_text(tmp_path / "Annotations" / "a.xml", "<annotation><object>")
    with pytest.raises(AnnotationError, match="a.xml: not a readable XML"):
        read_voc(DatasetSpec("voc", tmp_path, CMAP, split="train"))
