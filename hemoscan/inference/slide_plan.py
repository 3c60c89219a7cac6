"""Planning the scan of a whole-slide image: pixel size, pyramid level, regions, blank glass.

For each slide:

1. **Pixel size.** The model expects pixels of ``ModelConfig.input_mpp`` µm (its ``mpp``, or
   7.5 µm / ``rbc_diameter_px``). Level 0's pixel size comes from the slide's metadata, or from
   ``--mpp`` when the metadata has none; with neither the scan is refused
   (:class:`~hemoscan.errors.PixelSizeError`).
2. **Level.** Regions are read from the coarsest pyramid level that is not coarser than the
   model's pixel size (:func:`hemoscan.io.slides.best_level`) and resized to exactly that size.
3. **Regions.** The slide, at the model's scale, is cut into an overlapping grid of regions
   with :func:`hemoscan.inference.tiling.grid` (the predictor's own tiling, so a seam between
   regions is handled like a seam between windows). The overlap is at least the largest cell
   the model detects (``ModelConfig.largest_cell_px``, a hemophagocyte of 6 red cells), so a
   cell whose centre lies in a region's core is seen whole by that region; a region is at
   least the model's window and at least twice the overlap.
4. **Blank glass.** Regions whose core holds no tissue in the slide's
   :func:`~hemoscan.inference.tissue.tissue_mask` are skipped: never read, never predicted,
   counted in :attr:`SlidePlan.regions_background`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from hemoscan.errors import PixelSizeError, SlideError
from hemoscan.inference.preprocess import round_up
from hemoscan.inference.tiling import grid
from hemoscan.inference.tissue import tissue_mask
from hemoscan.io.regions import SlideRegion
from hemoscan.io.slides import Slide, best_level, is_slide
from hemoscan.io.sources import TileSource
from hemoscan.models.config import ModelConfig


def region_tiling(tile_size: int, overlap: int, largest_cell_px: float) -> tuple[int, int]:
    """``(size, overlap)`` of slide regions in model-input pixels (multiples of 32).

    The overlap is the predictor's ``overlap`` or the largest cell's diameter, whichever is
    larger; the size is the predictor's window ``tile_size`` or twice the overlap, whichever is
    larger (so at least half of a region is its own core).
    """
    region_overlap = round_up(max(overlap, largest_cell_px))
    return max(tile_size, 2 * region_overlap), region_overlap


@dataclass(frozen=True)
class SlidePlan:
    """How one slide is scanned, and what was skipped. Sizes are level-0 pixels.

    ``mpp``: level 0's µm per pixel, from ``mpp_source`` (``"metadata"`` or ``"given"``:
    ``--mpp``); ``target_mpp``: the model input's; ``level``: the pyramid level read, with its
    ``level_downsample`` and ``level_mpp``; ``region_size``/``region_overlap``: a full region's
    side and the overlap of neighbours; ``regions_total`` regions cover the slide, of which
    ``regions_background`` hold no tissue in the mask (computed on ``mask_level``, covering
    ``tissue_fraction`` of it) and are skipped; ``regions`` are the others, in row order.
    """

    slide: str
    sample: str
    vendor: str
    width: int
    height: int
    mpp: float
    mpp_source: str
    target_mpp: float
    level: int
    level_downsample: float
    level_mpp: float
    region_size: float
    region_overlap: float
    regions_total: int
    regions_background: int
    mask_level: int
    tissue_fraction: float
    regions: tuple[SlideRegion, ...] = field(repr=False, default=())

    def to_dict(self) -> dict[str, Any]:
        """The JSON record of the plan (everything but the regions themselves)."""
        return {
            "slide": self.slide,
            "sample": self.sample,
            "vendor": self.vendor,
            "width": self.width,
            "height": self.height,
            "mpp": round(self.mpp, 6),
            "mpp_source": self.mpp_source,
            "target_mpp": round(self.target_mpp, 6),
            "level": self.level,
            "level_downsample": round(self.level_downsample, 6),
            "level_mpp": round(self.level_mpp, 6),
            "region_size": round(self.region_size, 2),
            "region_overlap": round(self.region_overlap, 2),
            "regions_total": self.regions_total,
            "regions_scanned": self.regions_total - self.regions_background,
            "regions_background": self.regions_background,
            "mask_level": self.mask_level,
            "tissue_fraction": round(self.tissue_fraction, 4),
        }


def plan_slide(
    slide: Slide,
    sample: str,
    config: ModelConfig,
    tile_size: int,
    overlap: int,
    scale: float = 1.0,
) -> SlidePlan:
    """Plan the regions of ``slide`` for a model with ``config``, predicted with windows of
    ``tile_size``/``overlap`` pixels after resizing by ``scale`` (the predictor's settings).

    Raises:
        PixelSizeError: the slide has no pixel size.
        SlideError: the low-resolution level for the tissue mask cannot be read.
    """
    if slide.mpp is None:
        raise PixelSizeError(_no_mpp_message(slide.path))
    mpp0 = slide.mpp
    target = config.input_mpp
    size, region_overlap = region_tiling(tile_size, overlap, config.largest_cell_px)
    f = target / mpp0  # level-0 pixels per pixel of a region's image
    k = f / scale  # level-0 pixels per pixel the predictor's windows are laid out in
    width, height = slide.size
    grid_w, grid_h = max(1, round(width / k)), max(1, round(height / k))
    level = best_level(slide, target)
    lv = slide.levels[level]
    max_out = math.floor(size / scale)
    mask = tissue_mask(slide, mpp0)

    def to_level0(v: int, end: int, full: int) -> int:
        return full if v >= end else min(full, round(v * k))

    regions: list[SlideRegion] = []
    windows = grid(grid_w, grid_h, size, region_overlap)
    for win in windows:
        cx0, cx1 = to_level0(win.cx0, grid_w, width), to_level0(win.cx1, grid_w, width)
        cy0, cy1 = to_level0(win.cy0, grid_h, height), to_level0(win.cy1, grid_h, height)
        if cx1 <= cx0 or cy1 <= cy0 or not mask.any_in(cx0, cy0, cx1, cy1):
            continue
        bx0, bx1 = win.x0 * k, min((win.x0 + size) * k, width)
        by0, by1 = win.y0 * k, min((win.y0 + size) * k, height)
        lx0 = min(math.floor(bx0 / lv.downsample_x), lv.width - 1)
        ly0 = min(math.floor(by0 / lv.downsample_y), lv.height - 1)
        lx1 = max(lx0 + 1, min(math.ceil(bx1 / lv.downsample_x), lv.width))
        ly1 = max(ly0 + 1, min(math.ceil(by1 / lv.downsample_y), lv.height))
        w, h = lx1 - lx0, ly1 - ly0
        out_w = min(max(1, round(w * lv.downsample_x / f)), max_out)
        out_h = min(max(1, round(h * lv.downsample_y / f)), max_out)
        regions.append(
            SlideRegion(
                slide=slide.path, level=level, x=lx0, y=ly0, w=w, h=h, out_w=out_w, out_h=out_h,
                core_x0=cx0, core_y0=cy0, core_x1=cx1, core_y1=cy1,
                origin_x=lx0 * lv.downsample_x, origin_y=ly0 * lv.downsample_y,
                scale_x=w * lv.downsample_x / out_w, scale_y=h * lv.downsample_y / out_h,
            )
        )  # fmt: skip
    return SlidePlan(
        slide=slide.path, sample=sample, vendor=slide.vendor, width=width, height=height,
        mpp=mpp0, mpp_source=slide.mpp_source or "", target_mpp=target, level=level,
        level_downsample=lv.downsample, level_mpp=mpp0 * lv.downsample,
        region_size=size * k, region_overlap=region_overlap * k,
        regions_total=len(windows), regions_background=len(windows) - len(regions),
        mask_level=mask.level, tissue_fraction=mask.fraction, regions=tuple(regions),
    )  # fmt: skip


def _no_mpp_message(path: str) -> str:
    return (
        f"{path}: the slide's metadata gives no pixel size (µm per pixel), needed to read it at "
        "the model's scale; give it with --mpp (e.g. --mpp 0.25 for a 40x scan)"
    )


def slide_sample(path: str) -> str:
    """The default sample of a whole-slide image: its file name without the extension."""
    return os.path.splitext(os.path.basename(path))[0] or path


class ScanUnits:
    """What a scan works through: ``tiles`` (re-iterable, e.g.
    :class:`~hemoscan.io.sources.TileSources`) with each whole-slide image among them replaced
    by its regions to scan (see :func:`plan_slide`), in order; other tiles are kept as they
    are. Built with one pass over ``tiles`` that plans every slide (``plans``); each iteration
    then streams the units again, holding no list of them.

    A slide is its own sample, named after its file (:func:`slide_sample`), unless
    ``sample_id`` is given. ``mpp`` is the pixel size of slides whose metadata has none. A
    slide that cannot be opened stays one source with its ``error`` set (a failed tile).
    Every slide's pixel size is checked before any mask is computed.

    Raises:
        PixelSizeError: a slide has no pixel size and ``mpp`` is ``None`` (the message names it).
    """

    def __init__(
        self,
        tiles: Iterable[TileSource],
        config: ModelConfig,
        tile_size: int,
        overlap: int,
        scale: float = 1.0,
        mpp: float | None = None,
        sample_id: str | None = None,
    ) -> None:
        self.tiles = tiles
        slides: dict[int, TileSource] = {}  # by position in ``tiles``
        failed: dict[int, str] = {}
        for i, tile in enumerate(tiles):
            if tile.region is None and not tile.error and is_slide(tile.path):
                slides[i] = tile
                try:
                    with Slide(tile.path, mpp=mpp) as slide:
                        if slide.mpp is None:
                            raise PixelSizeError(_no_mpp_message(tile.path))
                except SlideError as e:
                    failed[i] = str(e)
        #: Each slide's plan, or a failed source for a slide that cannot be opened.
        self.by_position: dict[int, SlidePlan | TileSource] = {}
        for i, tile in slides.items():
            sample = sample_id or slide_sample(tile.path)
            try:
                if i in failed:
                    raise SlideError(failed[i])
                with Slide(tile.path, mpp=mpp) as slide:
                    plan = plan_slide(slide, sample, config, tile_size, overlap, scale)
            except SlideError as e:
                self.by_position[i] = TileSource(tile.path, sample, error=str(e))
                continue
            self.by_position[i] = plan

    @property
    def plans(self) -> list[SlidePlan]:
        return [p for p in self.by_position.values() if isinstance(p, SlidePlan)]

    def __iter__(self) -> Iterator[TileSource]:
        for i, tile in enumerate(self.tiles):
            unit = self.by_position.get(i)
            if unit is None:
                yield tile
            elif isinstance(unit, TileSource):
                yield unit
            else:
                yield from (TileSource(tile.path, unit.sample, region=r) for r in unit.regions)

