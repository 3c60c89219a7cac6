"""Planning whole-slide scans: the model's pixel size, region tiling, the tissue mask."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hemoscan.datamodel import CELL_CLASSES
from hemoscan.errors import ModelConfigError, PixelSizeError
from hemoscan.inference.slide_plan import ScanUnits, plan_slide, region_tiling
from hemoscan.inference.tissue import tissue_mask
from hemoscan.io.slides import Slide
from hemoscan.io.sources import TileSource
from hemoscan.models.config import ModelConfig
from tests.wsi import smear, write_pyramidal_tiff

CONFIG = ModelConfig(name="t", version="0", architecture="tiny_blob", classes=CELL_CLASSES,
                     tile_size=256, overlap=64, rbc_diameter_px=24, mpp=0.5)  # fmt: skip


def test_model_pixel_size_from_config() -> None:
    legacy = ModelConfig.from_dict({"name": "m", "version": "1", "architecture": "tiny_blob",
                                    "classes": ["rbc"], "rbc_diameter_px": 40.0})  # fmt: skip
    assert legacy.mpp is None and legacy.input_mpp == pytest.approx(7.5 / 40)
    assert legacy.largest_cell_px == 240
    assert CONFIG.input_mpp == 0.5
    assert ModelConfig.from_dict(CONFIG.to_dict()) == CONFIG
    with pytest.raises(ModelConfigError, match=r"mpp must be null or a finite number in \(0, 100\]"):
        ModelConfig(name="m", version="1", architecture="tiny_blob", classes=("rbc",), mpp=0.0)


def test_region_overlap_covers_the_largest_cell() -> None:
    assert region_tiling(1024, 256, 240.0) == (1024, 256)  # the default model: its own tiling
    assert region_tiling(256, 64, 144.0) == (320, 160)  # a small window grows to fit the cell
    size, overlap = region_tiling(512, 0, 100.0)
    assert overlap >= 100 and overlap % 32 == 0 and size == 512


def test_tissue_mask_finds_stain_and_dark_but_not_glass_or_padding(tmp_path: Path) -> None:
    image = smear(1024, 768, [(112, 112)], 8)  # one small dark cell, inside block (3, 3)
    image[584:600, 904:920] = (225, 160, 180)  # pale pink (saturation 0.29), in block (18, 28)
    image[:, 1000:] = 0  # black scanner padding
    image[400:700, 300:600] += np.random.default_rng(0).integers(0, 5, (300, 300, 3), np.uint8)
    with Slide(write_pyramidal_tiff(tmp_path / "m.tif", image, mpp=1.0)) as slide:
        mask = tissue_mask(slide, 1.0)  # 1 µm per pixel: blocks of 32 px, on level 2 (4 µm)
    assert mask.level == 2 and mask.block_w == 32 and mask.blocks.shape == (24, 32)
    assert mask.glass == pytest.approx(235, abs=5)
    assert sorted(zip(*np.nonzero(mask.blocks))) == [(3, 3), (18, 28)]
    assert mask.any_in(110, 110, 111, 111) and mask.any_in(910, 590, 911, 591)
    assert not mask.any_in(0, 0, 96, 1024)
    assert not mask.any_in(300, 400, 600, 700)  # noisy glass
    assert not mask.any_in(1000, 0, 1024, 768)  # padding


def _slide(tmp_path: Path, discs: list[tuple[int, int]], mpp: float | None = 0.25) -> Path:
    return write_pyramidal_tiff(tmp_path / "s.tif", smear(2048, 1536, discs, 24), mpp=mpp)


def test_plan_reads_the_level_of_the_model_scale_and_skips_glass(tmp_path: Path) -> None:
    with Slide(_slide(tmp_path, [(300, 300)])) as slide:
        plan = plan_slide(slide, "s", CONFIG, 256, 64)
    assert (plan.level, plan.level_mpp, plan.target_mpp) == (1, 0.5, 0.5)
    assert (plan.region_size, plan.region_overlap) == (640, 320)  # 320 / 160 model pixels
    assert plan.regions_total == 6 * 4
    assert plan.regions_total - plan.regions_background == len(plan.regions) >= 1
    assert any(r.in_core(300, 300) for r in plan.regions)
    for r in plan.regions:  # every scanned core is near the only disc
        assert r.core_x0 < 300 + 24 + 128 and r.core_x1 > 300 - 24 - 128
        assert (r.w, r.h) == (r.out_w, r.out_h) and r.level == 1  # no resizing at 0.5 µm
    cores = sorted((r.core_x0, r.core_y0) for r in plan.regions)
    assert len(set(cores)) == len(cores)


def test_plan_cores_partition_the_slide(tmp_path: Path) -> None:
    level0 = np.full((1536, 2048, 3), (200, 120, 150), np.uint8)  # stained everywhere
    path = write_pyramidal_tiff(tmp_path / "full.tif", level0, mpp=0.3)
    with Slide(path) as slide:
        plan = plan_slide(slide, "s", CONFIG, 256, 64)
    assert plan.regions_background == 0 and plan.level == 0  # 0.6 µm is coarser than 0.5
    covered = np.zeros((1536, 2048), np.int32)
    for r in plan.regions:
        covered[r.core_y0 : r.core_y1, r.core_x0 : r.core_x1] += 1
        # the region's image holds its core and the overlap, in level-0 pixels
        assert r.origin_x <= r.core_x0 and r.origin_x + r.out_w * r.scale_x >= r.core_x1 - 1e-6
        assert r.scale_x == pytest.approx(0.5 / 0.3, rel=0.01)
        assert max(r.out_w, r.out_h) <= 320
    assert (covered == 1).all()


def expand_slides(tiles: list[TileSource], *args, **kwargs):  # type: ignore[no-untyped-def]
    """The units of ``ScanUnits(tiles, ...)`` as a list, and the slides' plans."""
    units = ScanUnits(tiles, *args, **kwargs)
    return list(units), units.plans


def test_expand_slides_needs_a_pixel_size(tmp_path: Path) -> None:
    bare = str(_slide(tmp_path, [(300, 300)], mpp=None))
    tiles = [TileSource("a.png", "p"), TileSource(bare, "p")]
    with pytest.raises(
        PixelSizeError, match=r"s\.tif: the slide's metadata gives no pixel size.*--mpp"
    ):
        expand_slides(tiles, CONFIG, 256, 64)
    units, plans = expand_slides(tiles, CONFIG, 256, 64, mpp=0.25)
    assert units[0] == tiles[0] and plans[0].mpp_source == "given" and plans[0].sample == "s"
    assert all(u.region is not None and u.sample == "s" for u in units[1:]) and len(units) > 1
    units, _ = expand_slides(tiles, CONFIG, 256, 64, mpp=0.25, sample_id="P7")
    assert {u.sample for u in units[1:]} == {"P7"}


def test_expand_slides_keeps_a_broken_slide_as_a_failed_source(tmp_path: Path) -> None:
    bad = tmp_path / "broken.svs"
    bad.write_bytes(b"II*\x00" + b"\x00" * 40)
    (unit,), plans = expand_slides([TileSource(str(bad), "p")], CONFIG, 256, 64)
    assert plans == [] and unit.region is None and unit.sample == "broken"
    assert unit.error.startswith(f"{bad}: cannot open as a whole-slide image")
