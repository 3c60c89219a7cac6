"""Instance and binary mask reader."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import tifffile

from hemoscan.annotations import AnnotationError, AnnotationWarning, DatasetSpec, read_masks
from tests.annotations.util import blank, by_name

W, H = 80, 60


def _instance_mask() -> np.ndarray:
    m = np.zeros((H, W), np.uint16)
    m[10:20, 5:15] = 1  # rows 10..19, cols 5..14 -> box (5, 10, 15, 20)
    m[30:50, 40:45] = 300  # a 16-bit label
    m[20:25, 15:20] = 7  # touches label 1 but is its own object
    m[0, 0] = 9  # one pixel: below min_area
    return m


def test_instance_masks_16bit_png_and_tiff(tmp_path: Path) -> None:
    for name in ("a.png", "b.tif"):
        blank(tmp_path / "images" / name, W, H)
    (tmp_path / "masks").mkdir()
    assert cv2.imwrite(str(tmp_path / "masks" / "a.png"), _instance_mask())
    tifffile.imwrite(tmp_path / "masks" / "b.tif", _instance_mask().astype(np.int32))
    spec = DatasetSpec("masks", tmp_path, {"mask": "nucleated"}, options={"min_area": 4})
    recs = by_name(read_masks(spec))
    for r in recs.values():
        assert r.labels == ("nucleated",) * 3 and r.ignore.shape == (0, 4)
        np.testing.assert_allclose(r.boxes, [[5, 10, 15, 20], [15, 20, 20, 25], [40, 30, 45, 50]])
        assert r.supervised == {"nucleated"}


def _binary_mask() -> np.ndarray:
    m = np.zeros((H, W), np.uint8)
    m[5:15, 5:15] = 255  # a lone cell
    m[30:40, 10:20] = 255  # two touching cells: one 30 px wide component
    m[30:40, 20:40] = 255
    m[55:57, 70:72] = 255  # noise, 4 px
    return m


def test_binary_masks_merged_components_become_ignore(tmp_path: Path) -> None:
    blank(tmp_path / "images" / "a.png", W, H)
    blank(tmp_path / "images" / "b.png", W, H)
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks" / "a_mask.png"), _binary_mask())
    cv2.imwrite(str(tmp_path / "masks" / "z_mask.png"), _binary_mask())
    spec = DatasetSpec(
        "masks",
        tmp_path,
        {"mask": "nucleated"},
        supervised=[],
        options={"mask_suffix": "_mask", "max_size": 20, "min_area": 10},
    )
    with pytest.warns(AnnotationWarning) as caught:
        recs = by_name(read_masks(spec))
    text = " ".join(str(w.message) for w in caught)
    assert "z_mask.png" in text and "b.png" in text
    a = recs["a.png"]
    np.testing.assert_allclose(a.boxes, [[5, 5, 15, 15]])
    np.testing.assert_allclose(a.ignore, [[10, 30, 40, 40]])
    assert a.supervised == frozenset()  # positives only
    aspect = DatasetSpec(
        "masks",
        tmp_path,
        {"mask": "nucleated"},
        options={"mask_suffix": "_mask", "max_aspect": 2.0},
    )
    with pytest.warns(AnnotationWarning):
        a = by_name(read_masks(aspect))["a.png"]
    # the 30 x 10 merged pair is too elongated; the 4 px speck is below the default min_area
    np.testing.assert_allclose(a.boxes, [[5, 5, 15, 15]])
    np.testing.assert_allclose(a.ignore, [[10, 30, 40, 40]])
    everything_ignored = DatasetSpec(
        "masks", tmp_path, {"mask": "ignore"}, options={"mask_suffix": "_mask"}
    )
    with pytest.warns(AnnotationWarning):
        a = by_name(read_masks(everything_ignored))["a.png"]
    assert len(a) == 0 and len(a.ignore) == 2 and a.supervised == frozenset()


def test_jpeg_binary_masks_are_thresholded_above_127(tmp_path: Path) -> None:
    blank(tmp_path / "images" / "a.jpg", W, H)
    m = np.zeros((H, W, 3), np.uint8)
    m[10:30, 10:30] = 255
    m[40:50, 50:70] = 100  # faint: JPEG noise level, not an object
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks" / "a.jpg"), m, [cv2.IMWRITE_JPEG_QUALITY, 90])
    (rec,) = read_masks(DatasetSpec("masks", tmp_path, {"mask": "nucleated"}))
    np.testing.assert_allclose(rec.boxes, [[10, 10, 30, 30]], atol=1)


def test_rgba_channel_option(tmp_path: Path) -> None:
    blank(tmp_path / "images" / "a.png", W, H)
    m = np.zeros((H, W, 4), np.uint8)
    m[..., 3] = 255
    m[5:25, 5:25, 0] = 3  # R channel marks the object
    m[40:50, 40:50, 2] = 200  # B channel elsewhere
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), cv2.cvtColor(m, cv2.COLOR_RGBA2BGRA))
    (rec,) = read_masks(
        DatasetSpec("masks", tmp_path, {"mask": "macrophage"}, options={"channel": 0})
    )
    np.testing.assert_allclose(rec.boxes, [[5, 5, 25, 25]])


def test_mask_errors(tmp_path: Path) -> None:
    blank(tmp_path / "images" / "a.png", W, H)
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "masks" / "a.png"), np.zeros((H + 1, W), np.uint8))
    with pytest.raises(AnnotationError, match="a.png: mask is 80x61 but its image"):
        read_masks(DatasetSpec("masks", tmp_path, {"mask": "nucleated"}))
    with pytest.raises(AnnotationError, match="source class 'mask'"):
        read_masks(DatasetSpec("masks", tmp_path, {"cell": "nucleated"}))
    (tmp_path / "masks" / "a.png").write_bytes(b"not a png")
    with pytest.raises(AnnotationError, match="a.png: cannot read the mask"):
        read_masks(DatasetSpec("masks", tmp_path, {"mask": "nucleated"}))
