"""Resolving scan sources (image files, folders, glob patterns, ``.txt`` list files) to tiles.

Whole-slide images are found like tiles here; :class:`hemoscan.inference.slide_plan.ScanUnits`
then turns each into its regions (one :class:`TileSource` per region, with ``region`` set).
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from hemoscan.datamodel import Detection
from hemoscan.errors import ImageReadError, SourceError
from hemoscan.io.images import SUPPORTED_EXTENSIONS, read_tile
from hemoscan.io.regions import SlideRegion
from hemoscan.io.slides import SLIDE_EXTENSIONS, open_cached

_LIST_EXTENSION = ".txt"
#: Extensions found in folders and by patterns: image tiles and whole-slide images.
SCAN_EXTENSIONS: tuple[str, ...] = SUPPORTED_EXTENSIONS + SLIDE_EXTENSIONS
_IMAGE_KINDS = "/".join(SCAN_EXTENSIONS)
_DIGITS = re.compile(r"(\d+)")


@dataclass(frozen=True)
class TileSource:
    """One tile to scan.

    ``path`` is the path as the user wrote it, or as found by expanding a folder (``os.path.join``
    of the folder as given and the file's path inside it), a glob or a list file; it is never
    made absolute, so outputs echo what users wrote. ``sample`` groups tiles into samples.

    ``region`` is set for one region of a whole-slide image at ``path`` (see
    :mod:`hemoscan.io.regions`); ``error`` is set for a source known to be unreadable before
    decoding (a slide that cannot be opened): it is then recorded as a failed tile with it.
    ``scale`` fixes the factor the tile is analysed at, decided by the scan (its sample's
    consensus), with its ``scale_source``; ``None``: the predictor's own scale.
    """

    path: str
    sample: str
    region: SlideRegion | None = None
    error: str = ""
    scale: float | None = None
    scale_source: str = ""

    @property
    def name(self) -> str:
        """The ``tile`` of this source in the outputs: ``path``, or the region's name."""
        return self.path if self.region is None else self.region.name

    def place(
        self, width: int, height: int, detections: list[Detection] | tuple[Detection, ...]
    ) -> tuple[int, int, tuple[Detection, ...]]:
        """Output ``(width, height, detections)`` of this source, from the ``width x height``
        image it was read as and the detections found in it (image pixels): unchanged for a
        tile; for a slide region, the core's level-0 size and the detections whose centre lies
        in the core, in level-0 slide pixels."""
        if self.region is None:
            return width, height, tuple(detections)
        return (*self.region.core_size, self.region.to_slide(detections))


def read_source(source: TileSource) -> np.ndarray:
    """The ``(H, W, 3)`` uint8 RGB image of one unit of a scan: a whole tile, or a slide
    region resampled to the model's pixel size (the slide is opened once per process and
    kept, see :func:`hemoscan.io.slides.open_cached`).

    Raises:
        ImageReadError: the tile or region cannot be read (or ``source.error`` is set); the
            message names the file.
    """
    if source.error:
        raise ImageReadError(source.error)
    if source.region is None:
        return read_tile(source.path)
    region = source.region
    return region.read(open_cached(region.slide))


class Unreachable(NamedTuple):
    """Something met inside a folder that cannot be scanned: an unreadable folder, a broken
    symbolic link or a symbolic-link loop. It becomes a failed tile with ``error``."""

    path: str
    sample: str
    error: str


class TileSources:
    """The tiles of scan ``sources``, expanded anew on each iteration, streamed (see
    :func:`expand_sources` for the rules and errors). Iterating holds one folder listing at a
    time and a 16-byte digest per tile (to drop a file reached twice), not the tiles."""

    def __init__(
        self, sources: Sequence[str | os.PathLike[str]], sample_id: str | None = None
    ) -> None:
        if isinstance(sources, (str, bytes, os.PathLike)):
            raise TypeError("sources must be a sequence of paths, not a single path")
        if not sources:
            raise SourceError("no sources given: name image files, folders, glob patterns or lists")
        if sample_id is not None and not sample_id.strip():
            raise SourceError("the sample id must not be empty")
        self.sources = [os.fspath(s) for s in sources]
        self.sample_id = sample_id

    def check(self) -> None:
        """Raise the :class:`~hemoscan.errors.SourceError` an iteration would, now: one pass
        that expands every source (streamed, nothing kept), so that a source naming nothing
        is reported before anything slow (a model load) starts."""
        for source in self.sources:
            for _ in _expand(source, allow_list=True):
                pass

    def __iter__(self) -> Iterator[TileSource]:
        seen: set[bytes] = set()
        for source in self.sources:
            for found in _expand(source, allow_list=True):
                if isinstance(found, Unreachable):
                    sample = self.sample_id or found.sample
                    yield TileSource(path=found.path, sample=sample, error=found.error)
                    continue
                real = os.path.normcase(os.path.realpath(found)).encode("utf-8", "surrogateescape")
                key = hashlib.blake2b(real, digest_size=16).digest()
                if key in seen:
                    continue
                seen.add(key)
                yield TileSource(path=found, sample=self.sample_id or _sample_of(found))


def expand_sources(
    sources: Sequence[str | os.PathLike[str]], sample_id: str | None = None
) -> list[TileSource]:
    """Expand command-line sources into tiles, in the order the sources were given.

    Each source is one of:

    * an existing file: one tile. Its extension is not checked, so a file the user named
      explicitly (``notes.bmp``) is kept and fails later as a tile with a clear reason;
    * an existing ``.txt`` file: a list of sources, one per line; blank lines and lines starting
      with ``#`` are skipped, ``~`` is expanded, relative paths are relative to the list
      file's folder, and each line is expanded by these same rules (in the list's order), except
      that a ``.txt`` line is taken as a plain file, not read as a list;
    * an existing folder: every file under it, recursively, with a supported image or slide
      extension (:data:`SCAN_EXTENSIONS`, any case); names starting with ``.``
      (hidden files and folders) are skipped; symlinked folders are followed once (a link
      back to a folder already walked adds nothing). What cannot be walked is never left
      out silently: an unreadable folder, a broken symbolic link and a symbolic-link loop
      each become a tile with ``error`` set (the reason), recorded as failed;
    * a pattern with ``*``, ``?`` or ``[``: ``glob.glob(pattern, recursive=True)``, keeping
      files with a supported image or slide extension (hidden names are not matched by ``*``).

    Files found in a folder or by a pattern are sorted in natural order (``tile2`` before
    ``tile10``), folder by folder (a folder is read one listing at a time, so memory does not
    grow with the number of files under it). A file reached twice (same real path, e.g. listed
    twice or via a symlink) is kept once, where it first appeared.

    Samples: if ``sample_id`` is given, every tile belongs to it. Otherwise a tile's sample is
    the name of the folder directly holding it, ``basename(dirname(abspath(path)))``:
    ``scans/patient_A/tile1.png`` is in sample ``patient_A``, and ``tile1.png`` in the
    current folder is in the sample named after the current folder. (A whole-slide image is
    given its own sample later, see :class:`hemoscan.inference.slide_plan.ScanUnits`.)

    Raises:
        SourceError: when ``sources`` is empty, ``sample_id`` is empty, or a source
            (or a line of a list file) names nothing that exists, a folder holds no images, a
            pattern matches no images, or a list file is unreadable or lists nothing.
    """
    return list(TileSources(sources, sample_id))


def _sample_of(path: str) -> str:
    folder = os.path.dirname(os.path.abspath(path))
    return os.path.basename(folder) or folder


def _is_image_name(name: str) -> bool:
    return name.lower().endswith(SCAN_EXTENSIONS)


def _natural_key(path: str) -> tuple[tuple[tuple[str | int, ...], ...], str]:
    parts = re.split(r"[\\/]+", path)
    key = tuple(
        tuple(int(t) if i % 2 else t.casefold() for i, t in enumerate(_DIGITS.split(part)))
        for part in parts
    )
    return key, path


def _expand(source: str, allow_list: bool, where: str = "") -> Iterator[str | Unreachable]:
    try:
        mode = os.stat(source).st_mode
    except OSError:
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        yield from _expand_folder(source, where)
    elif mode is not None:
        if allow_list and source.lower().endswith(_LIST_EXTENSION):
            yield from _expand_list(source)
        else:
            yield source
    elif glob.has_magic(source):
        yield from _expand_glob(source, where)
    elif os.path.islink(source):
        raise SourceError(f"{where}{source}: broken symbolic link")
    else:
        raise SourceError(f"{where}{source}: no such file or folder")


def _expand_folder(folder: str, where: str) -> Iterator[str | Unreachable]:
    found = 0
    for path in _walk_sorted(folder, set()):
        found += 1
        yield path
    if not found:
        raise SourceError(f"{where}{folder}: folder holds no {_IMAGE_KINDS} images")


def _unreachable(path: str, sample: str, e: OSError) -> Unreachable:
    if e.errno == errno.ENOENT:
        reason = "broken symbolic link (its target does not exist)"
    elif e.errno == errno.ELOOP:
        reason = "symbolic link loop"
    else:
        reason = f"cannot read it ({e.strerror or e})"
    return Unreachable(path, sample, f"{path}: {reason}")


def _walk_sorted(folder: str, visited: set[tuple[int, int]]) -> Iterator[str | Unreachable]:
    """Image files under ``folder`` in natural order, one listing at a time; hidden names are
    skipped, symlinked folders followed once (``visited``: their device and inode); what
    cannot be read is yielded as :class:`Unreachable`."""
    try:
        st = os.stat(folder)
        if (st.st_dev, st.st_ino) in visited:
            return
        visited.add((st.st_dev, st.st_ino))
        with os.scandir(folder) as it:
            names = sorted((e.name for e in it if not e.name.startswith(".")), key=_natural_key)
    except OSError as e:  # its own name is the sample its tiles would have belonged to
        yield _unreachable(folder, os.path.basename(os.path.abspath(folder)), e)
        return
    for name in names:
        path = os.path.join(folder, name)
        try:
            mode = os.stat(path).st_mode
        except OSError as e:
            if os.path.islink(path):
                yield _unreachable(path, _sample_of(path), e)
            continue  # vanished since the listing
        if stat.S_ISDIR(mode):
            yield from _walk_sorted(path, visited)
        elif _is_image_name(name) and stat.S_ISREG(mode):
            yield path


def _expand_glob(pattern: str, where: str) -> list[str]:
    matches = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
    found = [p for p in matches if _is_image_name(p)]
    if not found:
        detail = f"{len(matches)} files but none is" if matches else "no"
        raise SourceError(f"{where}{pattern}: pattern matches {detail} {_IMAGE_KINDS} images")
    return sorted(found, key=_natural_key)


def _list_lines(list_file: str) -> Iterator[str]:
    """The lines of a list file, streamed, with a clear error for an unreadable one."""
    try:
        with open(list_file, encoding="utf-8-sig") as f:
            for line in f:
                yield line.rstrip("\r\n")
    except UnicodeDecodeError:
        raise SourceError(f"{list_file}: list file is not UTF-8 text") from None
    except OSError as e:
        raise SourceError(f"{list_file}: cannot read list file ({e.strerror or e})") from None


def _expand_list(list_file: str) -> Iterator[str | Unreachable]:
    base = os.path.dirname(list_file)
    count = 0
    for number, line in enumerate(_list_lines(list_file), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = os.path.join(base, os.path.expanduser(entry))
        for tile in _expand(path, allow_list=False, where=f"{list_file}, line {number}: "):
            count += 1
            yield tile
    if count == 0:
        raise SourceError(f"{list_file}: list file names no images")
