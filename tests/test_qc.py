"""Image-quality checks on synthetic tiles: sharp, blurred, washed-out, dark, sparse."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from hemoscan.datamodel import Detection, SampleFindings
from hemoscan.errors import HemoscanError
from hemoscan.examples import render_example_tile
from hemoscan.qc import QCThresholds, sample_qc, tile_flags, tile_metrics, tile_qc


@pytest.fixture(scope="module")
def field() -> tuple[np.ndarray, list[Detection]]:
    """A 384 px example field (red cells, nucleated cells, a macrophage) and its true boxes."""
    image, cells = render_example_tile(np.random.default_rng(7), (384, 384), macrophages=1)
    return image, [Detection(c.label, 1.0, *c.box) for c in cells]


def _washed_out(image: np.ndarray, keep: float = 0.3) -> np.ndarray:
    """The stain's absorbance scaled down: every pixel moved towards white."""
    return (255 - (255 - image.astype(np.float32)) * keep).astype(np.uint8)


def _findings(nucleated: int, tiles: int = 3, failed: int = 0, hemophagocytes: int = 0) -> SampleFindings:
    return SampleFindings("S", {"hemophagocyte": hemophagocytes}, nucleated, None, {}, {}, 0, 0,
                          tiles, failed)  # fmt: skip


def test_a_good_field_raises_no_flag(field) -> None:
    image, dets = field
    qc = tile_qc(image, dets)
    assert qc.flags == ()
    m = qc.metrics
    assert m["sharpness"] > 4 and m["stain_density"] > 0.2 and m["glass_brightness"] > 200
    assert 330 < m["rbc_hue"] or m["rbc_hue"] < 20  # pink-red red cells
    assert 240 < m["nucleus_hue"] < 300  # purple-blue nuclei


@pytest.mark.parametrize("sigma", [1.5, 3.0])
def test_a_blurred_field_is_out_of_focus(field, sigma: float) -> None:
    image, dets = field
    blurred = cv2.GaussianBlur(image, (0, 0), sigma)
    assert tile_qc(blurred, dets).flags == ("out_of_focus",)


def test_focus_is_judged_at_the_models_scale(field) -> None:
    """A field at three times the model's scale looks soft pixel by pixel; shrunk to the
    model's scale (as the scan does with --scale 0.333) it is sharp again."""
    image, dets = field
    big = cv2.resize(image, None, fx=3, fy=3, interpolation=cv2.INTER_CUBIC)
    big_dets = [Detection(d.label, 1.0, d.x1 * 3, d.y1 * 3, d.x2 * 3, d.y2 * 3) for d in dets]
    assert "out_of_focus" in tile_qc(big, big_dets).flags
    assert "out_of_focus" not in tile_qc(big, big_dets, scale=1 / 3).flags


def test_washed_out_and_dark_fields(field) -> None:
    image, dets = field
    assert tile_qc(_washed_out(image), dets).flags == ("washed_out",)
    bluish_dark = np.clip(image.astype(np.float32) * (0.4, 0.4, 0.7), 0, 255).astype(np.uint8)
    assert set(tile_qc(bluish_dark, dets).flags) == {"over_stained", "rbc_colour"}


def test_blank_glass_is_not_judged(field) -> None:
    blank = np.full((256, 256, 3), 236, np.uint8)
    qc = tile_qc(blank, [])
    assert qc.flags == () and qc.metrics["rbc_hue"] is None and qc.metrics["stained_fraction"] == 0


def test_sample_flags_focus_fraction_adequacy_and_failed_tiles(field) -> None:
    image, dets = field
    sharp, blurred = tile_qc(image, dets), tile_qc(cv2.GaussianBlur(image, (0, 0), 3), dets)
    sparse = sample_qc(_findings(nucleated=26, tiles=4, failed=1, hemophagocytes=1),
                       [("a", sharp), ("b", blurred), ("c", sharp)])  # fmt: skip
    assert sparse.codes == ("out_of_focus", "too_few_cells", "failed_tiles")
    messages = {f.code: f.message for f in sparse.flags}
    assert messages["out_of_focus"] == "1 of 3 tiles out of focus (sharpness < 3)"
    assert messages["too_few_cells"].startswith("only 26 nucleated cells assessed (minimum 500)")
    assert "95% CI spans 182 per 1000" in messages["too_few_cells"]
    assert messages["failed_tiles"] == "1 of 4 tiles could not be read or scanned"
    assert sparse.tiles_flagged == {"out_of_focus": 1} and sparse.examples == {"out_of_focus": ("b",)}
    assert sparse.measures["ci95_width_per_1000"] == pytest.approx(188.928 - 6.822, abs=0.01)
    many = [("t%d" % i, sharp) for i in range(19)] + [("b", blurred)]
    adequate = sample_qc(_findings(nucleated=5000, tiles=20), many)
    assert adequate.flags == ()  # 1 of 20 blurred tiles is within the 10% allowed


def test_thresholds_are_configurable(field, tmp_path: Path) -> None:
    image, dets = field
    metrics = tile_metrics(cv2.GaussianBlur(image, (0, 0), 1.5), dets)
    assert "out_of_focus" in tile_flags(metrics, QCThresholds())
    assert tile_flags(metrics, QCThresholds(min_sharpness=2.0)) == ()
    path = tmp_path / "qc.yaml"
    path.write_text("min_nucleated: 20\nrbc_hue: [300, 30]\n")
    loaded = QCThresholds.from_file(path)
    assert loaded.min_nucleated == 20 and loaded.rbc_hue == (300.0, 30.0)
    assert sample_qc(_findings(nucleated=26), [], loaded).flags == ()
    path.write_text(json.dumps({"min_sharpnes": 2}))
    with pytest.raises(HemoscanError, match="unknown QC threshold 'min_sharpnes'"):
        QCThresholds.from_file(path)
    with pytest.raises(HemoscanError, match="must be a number"):
        QCThresholds.from_mapping({"min_nucleated": "many"})


def test_the_darkest_fraction_is_numpys_quantile() -> None:
    from hemoscan.qc import _quantile

    rng = np.random.default_rng(0)
    for shape in [(1, 1), (1, 2), (3, 5), (20, 20), (37, 41)]:
        for _ in range(50):
            patch = rng.integers(0, 256, shape, dtype=np.uint8)
            for q in (0.0, 0.3, 0.5, 1.0):
                assert _quantile(patch, q) == pytest.approx(np.quantile(patch, q), abs=1e-9)


@pytest.mark.parametrize("sigma", [1.0, 2.0])
def test_focus_is_cv2s_gaussian_blur_of_the_float_image(field, sigma: float) -> None:
    """The uint8 image is smoothed with GaussianBlur's own float32 kernel: the value of
    GaussianBlur on the image converted to float32 (to float32 rounding), on fields of any
    size."""
    from hemoscan.qc import _laplacian_variance

    gray = cv2.cvtColor(field[0], cv2.COLOR_RGB2GRAY)
    rng = np.random.default_rng(1)
    for patch in (gray, gray[:37, :53], rng.integers(0, 256, (5, 300), dtype=np.uint8)):
        blurred = cv2.GaussianBlur(patch.astype(np.float32), (0, 0), sigma)
        reference = float(cv2.meanStdDev(cv2.Laplacian(blurred, cv2.CV_32F))[1][0, 0]) ** 2
        assert _laplacian_variance(patch, sigma) == pytest.approx(reference, rel=1e-6)
