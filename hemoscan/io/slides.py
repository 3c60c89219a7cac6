"""Whole-slide images: opening them, their metadata, and reading a region at a level.

Read with `tiffslide <https://github.com/Bayer-Group/tiffslide>`_ (tifffile + zarr; no native
library): Aperio SVS, Hamamatsu NDPI, Leica SCN, Ventana BIF, Philips TIFF and generic
pyramidal TIFF (OME-TIFF included). Regions are decoded on demand from the tiles that hold
them, so memory does not grow with the size of the slide. :class:`Slide` implements
:class:`hemoscan.io.readers.ImageReader`; its arrays follow :mod:`hemoscan.io.images`
(``(h, w, 3)`` uint8 RGB, 16-bit scaled by ``>> 8``, alpha composited on white).

tiffslide (and zarr) are imported only when a slide is opened (135 ms that plain tiles skip).
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from typing import Any, Self

import numpy as np

from hemoscan.errors import SlideError
from hemoscan.io.images import MAX_PIXELS, to_rgb8
from hemoscan.io.readers import ImageReader, Level, TileImage, check_box

#: Extensions that are always opened as whole-slide images. ``.tif``/``.tiff`` files are
#: slides only when their content says so (see :func:`is_slide`).
SLIDE_EXTENSIONS: tuple[str, ...] = (".svs", ".ndpi", ".scn", ".bif")
_TIFF_EXTENSIONS = (".tif", ".tiff")

#: Pixel sizes outside this range (µm per pixel) are not a microscope's: such metadata (e.g.
#: a 72-dpi default resolution tag) is treated as missing.
MPP_RANGE: tuple[float, float] = (0.01, 100.0)

#: A pyramid level up to this much coarser than the wanted pixel size still counts as "not
#: coarser" (levels are rarely exact powers of two of level 0).
LEVEL_TOLERANCE: float = 0.02


def is_slide(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is read as a whole-slide image rather than as a plain tile.

    True for :data:`SLIDE_EXTENSIONS` (any case), and for a ``.tif``/``.tiff`` file that is a
    vendor slide format (SVS, NDPI, SCN, BIF, Philips), a tiled pyramid (its first page is
    tiled and its first image series has reduced-resolution levels), or larger than
    :data:`~hemoscan.io.images.MAX_PIXELS`. A plain TIFF tile (strips, or a single level, even
    with a thumbnail page) is not a slide; nor is a file that cannot be parsed as TIFF (it then
    fails as a tile, with the reason).
    """
    ext = os.path.splitext(os.fspath(path))[1].lower()
    if ext in SLIDE_EXTENSIONS:
        return True
    if ext not in _TIFF_EXTENSIONS:
        return False
    import tifffile  # only a TIFF asks: a JPEG or PNG scan starts without it

    try:
        with tifffile.TiffFile(os.fspath(path)) as tif:
            if any(getattr(tif, f"is_{kind}", False) for kind in ("svs", "ndpi", "scn", "bif",
                                                                  "philips")):  # fmt: skip
                return True
            page = tif.pages.first
            if int(page.imagewidth) * int(page.imagelength) > MAX_PIXELS:
                return True
            return bool(page.is_tiled) and len(tif.series[0].levels) > 1
    except Exception:  # noqa: BLE001 - unreadable: not a slide; reading it as a tile says why
        return False


def _valid_mpp(value: Any) -> float | None:
    try:
        mpp = float(value)
    except (TypeError, ValueError):
        return None
    return mpp if MPP_RANGE[0] <= mpp <= MPP_RANGE[1] else None


class Slide:
    """A whole-slide image opened for reading (an :class:`~hemoscan.io.readers.ImageReader`).

    ``mpp`` is level 0's pixel size in µm per pixel: the slide's own (``mpp-x``/``mpp-y``
    from its metadata, averaged) when it has a plausible one (:data:`MPP_RANGE`), else the
    ``mpp`` given here, else ``None``; ``mpp_source`` says which (``"metadata"``,
    ``"given"`` or ``None``). Safe to read from several threads at once.

    Raises:
        SlideError: the file is missing or cannot be opened as a slide; the message names it.
    """

    def __init__(self, path: str | os.PathLike[str], mpp: float | None = None) -> None:
        self._path = os.fspath(path)
        if not os.path.isfile(self._path):
            reason = "not found" if not os.path.exists(self._path) else "not a regular file"
            raise SlideError(f"{self._path}: {reason}")
        try:
            import tiffslide  # lazy: 135 ms to import, for whole-slide images only

            self._ts = tiffslide.TiffSlide(self._path)
            props = self._ts.properties
            dims = self._ts.level_dimensions
        except Exception as e:  # noqa: BLE001 - any parser failure is an unreadable slide
            detail = str(e).strip() or type(e).__name__
            raise SlideError(
                f"{self._path}: cannot open as a whole-slide image ({detail})"
            ) from None
        w0, h0 = (int(v) for v in dims[0])
        self._levels = tuple(Level(int(w), int(h), w0 / int(w), h0 / int(h)) for w, h in dims)
        self.vendor: str = str(props.get("tiffslide.vendor") or "generic-tiff")
        given = (_valid_mpp(props.get("tiffslide.mpp-x")), _valid_mpp(props.get("tiffslide.mpp-y")))
        found = [m for m in given if m is not None]
        self.metadata_mpp: float | None = sum(found) / len(found) if found else None
        if self.metadata_mpp is not None:
            self._mpp, self.mpp_source = self.metadata_mpp, "metadata"
        elif mpp is not None:
            if not mpp > 0:
                raise ValueError(f"mpp must be positive (got {mpp})")
            self._mpp, self.mpp_source = float(mpp), "given"
        else:
            self._mpp, self.mpp_source = None, None

    @property
    def path(self) -> str:
        return self._path

    @property
    def levels(self) -> tuple[Level, ...]:
        return self._levels

    @property
    def size(self) -> tuple[int, int]:
        """``(width, height)`` of level 0, pixels."""
        return self._levels[0].width, self._levels[0].height

    @property
    def mpp(self) -> float | None:
        return self._mpp

    def level_mpp(self, level: int) -> float | None:
        """µm per pixel of ``level`` (level 0's times the level's mean downsample)."""
        return None if self._mpp is None else self._mpp * self._levels[level].downsample

    def read_region(self, x: int, y: int, w: int, h: int, level: int = 0) -> np.ndarray:
        """``(h, w, 3)`` uint8 RGB of the box ``[x, x + w) x [y, y + h)`` in pixels of ``level``.

        Raises:
            ValueError: the box is empty or not inside the level.
            SlideError: the tiles holding the box cannot be decoded; the message names the
                slide and the box.
        """
        check_box(self._path, self._levels, x, y, w, h, level)
        # tiffslide takes the location in level-0 pixels and maps it to the level with
        # int(location / downsample): pick the level-0 location that maps back to exactly x, y.
        ds = float(self._ts.level_downsamples[level])
        location = (_level0_location(x, ds), _level0_location(y, ds))
        try:
            pixels = self._ts.read_region(location, level, (w, h), as_array=True, padding=False)
            rgb = to_rgb8(np.asarray(pixels))
        except Exception as e:  # noqa: BLE001 - a corrupt tile fails this region only
            detail = str(e).strip() or type(e).__name__
            raise SlideError(
                f"{self._path}: cannot read region x={x}, y={y}, w={w}, h={h} at level {level} "
                f"({detail})"
            ) from None
        if rgb.shape[:2] != (h, w):
            raise SlideError(
                f"{self._path}: region x={x}, y={y}, w={w}, h={h} at level {level} came back "
                f"as {rgb.shape[1]}x{rgb.shape[0]}"
            )
        return rgb

    def close(self) -> None:
        self._ts.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Slide({self._path!r}, {self.size[0]}x{self.size[1]}, mpp={self._mpp})"


def _level0_location(coordinate: int, downsample: float) -> int:
    """The level-0 coordinate ``c`` with ``int(c / downsample) == coordinate``."""
    c = math.ceil(coordinate * downsample)
    while c > 0 and int(c / downsample) > coordinate:
        c -= 1
    while int(c / downsample) < coordinate:
        c += 1
    return c


def best_level(slide: Slide, target_mpp: float, tolerance: float = LEVEL_TOLERANCE) -> int:
    """The level to read for pixels of ``target_mpp`` µm: the coarsest level that is not
    coarser than the target (up to ``tolerance``, relative), so regions are only ever
    downsampled to the target (or upsampled from level 0 when even level 0 is coarser).

    Raises:
        ValueError: the slide has no pixel size.
    """
    if slide.mpp is None:
        raise ValueError(f"{slide.path}: no pixel size")
    best = 0
    for i in range(len(slide.levels)):
        mpp = slide.level_mpp(i)
        assert mpp is not None
        if mpp <= target_mpp * (1 + tolerance) and mpp > (slide.level_mpp(best) or 0):
            best = i
    return best


class _SlideCache:
    """Open slides shared by the threads that read regions, least recently used closed first."""

    def __init__(self, size: int = 4) -> None:
        self._size = size
        self._slides: OrderedDict[str, Slide] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, path: str) -> Slide:
        key = os.path.realpath(path)
        with self._lock:
            slide = self._slides.get(key)
            if slide is not None:
                self._slides.move_to_end(key)
                return slide
        slide = Slide(path)  # outside the lock: opening can take a while
        with self._lock:
            if key in self._slides:  # another thread opened it meanwhile
                slide.close()
                return self._slides[key]
            self._slides[key] = slide
            while len(self._slides) > self._size:
                # the evicted slide may still be read by another thread: let it be garbage
                # collected (tiffslide closes its file then) rather than closing it under it
                self._slides.popitem(last=False)
            return slide

    def clear(self) -> None:
        with self._lock:
            self._slides.clear()


_CACHE = _SlideCache()


def open_cached(path: str) -> Slide:
    """A :class:`Slide` for ``path`` from a small per-process cache (opened on first use), so
    the regions of a slide, read one by one in decode threads, do not reopen it each time.
    Its ``mpp`` is the metadata's only: reading regions needs no pixel size."""
    return _CACHE.get(path)


def clear_cache() -> None:
    """Forget the cached slides (their files close when no region read holds them)."""
    _CACHE.clear()


def open_image(path: str | os.PathLike[str], mpp: float | None = None) -> ImageReader:
    """Open ``path`` with the reader its content calls for (see :func:`is_slide`): a
    :class:`Slide` for whole-slide images (``mpp`` is used when the slide's metadata gives no
    pixel size), else a :class:`~hemoscan.io.readers.TileImage`.

    Raises:
        ImageReadError: the file cannot be read (:class:`~hemoscan.errors.SlideError` for a
            slide), with a message naming it.
    """
    if is_slide(path):
        return Slide(path, mpp=mpp)
    return TileImage(path)
