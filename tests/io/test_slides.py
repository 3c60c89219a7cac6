"""Whole-slide reading: slide detection, metadata, exact region reads, regions and their names."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

from hemoscan.datamodel import Detection, EngulfedCell
from hemoscan.errors import ImageReadError, SlideError
from hemoscan.io.readers import ImageReader, TileImage
from hemoscan.io.regions import SlideRegion, parse_region_name, region_name
from hemoscan.io.slides import Slide, best_level, is_slide, open_image
from hemoscan.io.sources import TileSource, expand_sources, read_source
from tests.conftest import disc_image, write_image
from tests.wsi import pyramid, smear, write_pyramidal_tiff, write_svs


@pytest.fixture(scope="module")
def level0() -> np.ndarray:
    rng = np.random.default_rng(3)
    image = smear(1024, 768, [(100, 100), (700, 400)], 20)
    image[300:340, 500:560] = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)  # texture
    return image


@pytest.fixture(scope="module")
def generic(tmp_path_factory: pytest.TempPathFactory, level0: np.ndarray) -> Path:
    return write_pyramidal_tiff(tmp_path_factory.mktemp("s") / "slide.tif", level0, mpp=0.25)


def test_generic_pyramid_metadata_and_levels(generic: Path) -> None:
    with Slide(generic) as slide:
        assert isinstance(slide, ImageReader)
        assert slide.size == (1024, 768)
        assert [(lv.width, lv.height, lv.downsample) for lv in slide.levels] == [
            (1024, 768, 1.0), (512, 384, 2.0), (256, 192, 4.0)]  # fmt: skip
        assert slide.mpp == pytest.approx(0.25) and slide.mpp_source == "metadata"
        assert slide.level_mpp(2) == pytest.approx(1.0)
        assert slide.vendor == "generic-tiff"


def test_read_region_is_exact_at_every_level(generic: Path, level0: np.ndarray) -> None:
    levels = pyramid(level0, 3)
    with Slide(generic) as slide:
        for level, (x, y, w, h) in [(0, (0, 0, 1024, 768)), (0, (501, 299, 77, 45)),
                                    (1, (255, 1, 200, 383)), (2, (3, 5, 7, 11))]:  # fmt: skip
            got = slide.read_region(x, y, w, h, level)
            assert got.dtype == np.uint8 and got.shape == (h, w, 3) and got.flags.c_contiguous
            np.testing.assert_array_equal(got, levels[level][y : y + h, x : x + w])


def test_read_region_outside_the_level_is_refused(generic: Path) -> None:
    with Slide(generic) as slide:
        with pytest.raises(ValueError, match="outside level 1"):
            slide.read_region(500, 0, 20, 20, level=1)
        with pytest.raises(ValueError, match="no level 3"):
            slide.read_region(0, 0, 1, 1, level=3)


def test_svs_is_read_through_the_same_reader(tmp_path: Path, level0: np.ndarray) -> None:
    path = write_svs(tmp_path / "a.svs", level0, mpp=0.2502, compression="zlib")
    with Slide(path) as slide:
        assert slide.vendor == "aperio" and slide.mpp == pytest.approx(0.2502)
        assert [lv.width for lv in slide.levels] == [1024, 512, 256]
        np.testing.assert_array_equal(slide.read_region(10, 20, 30, 40, 1),
                                      pyramid(level0, 2)[1][20:60, 10:40])  # fmt: skip


def test_pixel_size_missing_given_or_implausible(tmp_path: Path, level0: np.ndarray) -> None:
    bare = write_pyramidal_tiff(tmp_path / "bare.tif", level0, mpp=None)
    with Slide(bare) as slide:
        assert slide.mpp is None and slide.mpp_source is None
    with Slide(bare, mpp=0.5) as slide:
        assert slide.mpp == 0.5 and slide.mpp_source == "given"
    dpi72 = tmp_path / "dpi72.tif"
    with tifffile.TiffWriter(dpi72) as tw:  # a pyramid with a desktop-publishing default
        tw.write(level0, tile=(256, 256), photometric="rgb", subifds=1, resolution=(72, 72),
                 resolutionunit="INCH")  # fmt: skip
        tw.write(level0[::2, ::2], tile=(256, 256), photometric="rgb", subfiletype=1)
    with Slide(dpi72) as slide:  # 352.8 µm per pixel: not a microscope's, treated as missing
        assert slide.mpp is None
    with Slide(write_pyramidal_tiff(tmp_path / "m.tif", level0, mpp=0.25), mpp=9.0) as slide:
        assert slide.mpp == pytest.approx(0.25) and slide.mpp_source == "metadata"


def test_best_level_is_the_coarsest_not_coarser_than_the_target(generic: Path) -> None:
    with Slide(generic) as slide:  # levels at 0.25, 0.5 and 1.0 µm per pixel
        assert best_level(slide, 0.5) == 1
        assert best_level(slide, 0.505) == 1  # within the 2% tolerance
        assert best_level(slide, 0.49) == 0
        assert best_level(slide, 0.75) == 1
        assert best_level(slide, 3.0) == 2
        assert best_level(slide, 0.1) == 0  # finer than level 0: read level 0, enlarge


def test_unreadable_slide_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.svs"
    bad.write_bytes(b"II*\x00" + b"\x00" * 40)
    with pytest.raises(SlideError, match="broken.svs: cannot open as a whole-slide image"):
        Slide(bad)
    with pytest.raises(SlideError, match="missing.ndpi: not found"):
        Slide(tmp_path / "missing.ndpi")
    assert issubclass(SlideError, ImageReadError)


def test_slides_and_tiles_are_told_apart(tmp_path: Path, generic: Path, level0: np.ndarray) -> None:
    assert is_slide(generic) and is_slide(tmp_path / "x.SVS") and is_slide("y.ndpi")
    small = level0[:200, :300]
    tifffile.imwrite(tmp_path / "strips.tif", small, photometric="rgb")
    tifffile.imwrite(tmp_path / "tiled.tif", small, photometric="rgb", tile=(64, 64))
    with tifffile.TiffWriter(tmp_path / "thumb.tif") as tw:  # a tile with a thumbnail page
        tw.write(small, photometric="rgb")
        tw.write(small[::4, ::4], photometric="rgb", subfiletype=1)
    write_image(tmp_path / "a.png", small)
    (tmp_path / "junk.tif").write_bytes(b"not a tiff")
    for name in ("strips.tif", "tiled.tif", "thumb.tif", "a.png", "junk.tif"):
        assert not is_slide(tmp_path / name), name
    assert isinstance(open_image(tmp_path / "thumb.tif"), TileImage)
    with open_image(generic) as reader:
        assert isinstance(reader, Slide)


def test_tile_image_reads_regions_of_the_decoded_tile(tmp_path: Path) -> None:
    image, _ = disc_image(120, 80, 2)
    reader = open_image(write_image(tmp_path / "t.png", image))
    assert isinstance(reader, ImageReader) and reader.mpp is None
    assert [(lv.width, lv.height) for lv in reader.levels] == [(120, 80)]
    np.testing.assert_array_equal(reader.read_region(0, 0, 120, 80), image)
    np.testing.assert_array_equal(reader.read_region(10, 5, 20, 30), image[5:35, 10:30])
    with pytest.raises(ValueError):
        reader.read_region(110, 0, 20, 10)


def test_folders_find_slides(tmp_path: Path, generic: Path) -> None:
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "b.svs").write_bytes(b"x")
    (tmp_path / "in" / "a.ndpi").write_bytes(b"x")
    found = [Path(t.path).name for t in expand_sources([str(tmp_path / "in")])]
    assert found == ["a.ndpi", "b.svs"]


def _region(**kw: float) -> SlideRegion:
    base: dict = {"slide": "s/a.svs", "level": 1, "x": 100, "y": 50, "w": 200, "h": 100,
                  "out_w": 400, "out_h": 200, "core_x0": 250, "core_y0": 150, "core_x1": 450,
                  "core_y1": 250, "origin_x": 200.0, "origin_y": 100.0, "scale_x": 1.0,
                  "scale_y": 1.0}  # fmt: skip
    return SlideRegion(**{**base, **kw})


def test_region_names_round_trip() -> None:
    region = _region()
    assert region.name == "s/a.svs [x=250,y=150,w=200,h=100]" and region.core_size == (200, 100)
    assert parse_region_name(region.name) == ("s/a.svs", 250, 150, 200, 100)
    assert parse_region_name(region_name("d i r/x [1].tif", 0, 5, 7, 9)) == (
        "d i r/x [1].tif", 0, 5, 7, 9)  # fmt: skip
    for plain in ("scans/a.png", "a [x=1,y=2].png", "a [x=1,y=2,w=3,h=-4]"):
        assert parse_region_name(plain) is None


def test_region_places_detections_in_level0_and_keeps_its_core() -> None:
    region = _region(origin_x=200.0, origin_y=100.0, scale_x=0.5, scale_y=0.5)
    inside = Detection("hemophagocyte", 0.9, 100, 100, 140, 140,
                       (EngulfedCell("rbc", 0.8, 110, 110, 120, 120),))  # fmt: skip
    edge_in = Detection("rbc", 0.5, 90, 90, 110, 110)  # centre (100, 100) -> (250, 150): core
    edge_out = Detection("rbc", 0.5, 490, 290, 510, 310)  # centre -> (450, 250): next core
    placed = region.to_slide([inside, edge_in, edge_out])
    assert len(placed) == 2
    hemo = placed[0]
    assert (hemo.x1, hemo.y1, hemo.x2, hemo.y2) == (250, 150, 270, 170)
    assert hemo.engulfed_cells[0] == EngulfedCell("rbc", 0.8, 255, 155, 260, 160)
    back = region.to_image(placed)
    assert back[0] == inside and back[1] == edge_in


def test_read_source_reads_regions_resized_to_the_model_scale(generic: Path,
                                                              level0: np.ndarray) -> None:  # fmt: skip
    region = _region(slide=str(generic), level=1, x=100, y=50, w=200, h=100, out_w=100, out_h=50)
    got = read_source(TileSource(str(generic), "s", region=region))
    assert got.shape == (50, 100, 3)
    expected = pyramid(level0, 3)[2][25:75, 50:150]  # level 2 is level 1 halved the same way
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1
    with pytest.raises(ImageReadError, match="told so"):
        read_source(TileSource("x.svs", "s", error="x.svs: told so"))
