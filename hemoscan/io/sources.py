"""Resolving scan sources (image files, folders, glob patterns, ``.txt`` list files) to tiles.

Whole-slide images are found like tiles here; :func:`hemoscan.inference.slide_plan.expand_slides`
then turns each into its regions (one :class:`TileSource` per region, with ``region`` set).
"""

from __future__ import annotations

import glob
import os
import re
import stat
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hemoscan.errors import SourceError
from hemoscan.io.images import SUPPORTED_EXTENSIONS
from hemoscan.io.slides import SLIDE_EXTENSIONS

if TYPE_CHECKING:
    from hemoscan.datamodel import Detection
    from hemoscan.io.regions import SlideRegion

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
    """

    path: str
    sample: str
    region: SlideRegion | None = None
    error: str = ""

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
      (hidden files and folders) are skipped; symlinked folders are followed once;
    * a pattern with ``*``, ``?`` or ``[``: ``glob.glob(pattern, recursive=True)``, keeping
      files with a supported image or slide extension (hidden names are not matched by ``*``).

    Files found in a folder or by a pattern are sorted in natural order (``tile2`` before
    ``tile10``), compared folder by folder. A file reached twice (same real path, e.g. listed
    twice or via a symlink) is kept once, where it first appeared.

    Samples: if ``sample_id`` is given, every tile belongs to it. Otherwise a tile's sample is
    the name of the folder directly holding it, ``basename(dirname(abspath(path)))``:
    ``scans/patient_A/tile1.png`` is in sample ``patient_A``, and ``tile1.png`` in the
    current folder is in the sample named after the current folder. (A whole-slide image is
    given its own sample later, see :func:`hemoscan.inference.slide_plan.expand_slides`.)

    Raises:
        SourceError: eagerly, when ``sources`` is empty, ``sample_id`` is empty, or a source
            (or a line of a list file) names nothing that exists, a folder holds no images, a
            pattern matches no images, or a list file is unreadable or lists nothing.
    """
    if isinstance(sources, (str, bytes, os.PathLike)):
        raise TypeError("sources must be a sequence of paths, not a single path")
    if not sources:
        raise SourceError("no sources given: name image files, folders, glob patterns or lists")
    if sample_id is not None and not sample_id.strip():
        raise SourceError("the sample id must not be empty")

    tiles: list[TileSource] = []
    seen: set[str] = set()
    for source in sources:
        for path in _expand(os.fspath(source), allow_list=True):
            key = os.path.normcase(os.path.realpath(path))
            if key in seen:
                continue
            seen.add(key)
            tiles.append(TileSource(path=path, sample=sample_id or _sample_of(path)))
    return tiles


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


def _expand(source: str, allow_list: bool, where: str = "") -> Iterator[str]:
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


def _expand_folder(folder: str, where: str) -> list[str]:
    found: list[str] = []
    visited: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        try:
            st = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            continue
        if (st.st_dev, st.st_ino) in visited:
            dirnames[:] = []
            continue
        visited.add((st.st_dev, st.st_ino))
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for name in filenames:
            if not name.startswith(".") and _is_image_name(name):
                path = os.path.join(dirpath, name)
                if os.path.isfile(path):
                    found.append(path)
    if not found:
        raise SourceError(f"{where}{folder}: folder holds no {_IMAGE_KINDS} images")
    return sorted(found, key=_natural_key)


def _expand_glob(pattern: str, where: str) -> list[str]:
    matches = [p for p in glob.glob(pattern, recursive=True) if os.path.isfile(p)]
    found = [p for p in matches if _is_image_name(p)]
    if not found:
        detail = f"{len(matches)} files but none is" if matches else "no"
        raise SourceError(f"{where}{pattern}: pattern matches {detail} {_IMAGE_KINDS} images")
    return sorted(found, key=_natural_key)


def _expand_list(list_file: str) -> Iterator[str]:
    try:
        with open(list_file, encoding="utf-8-sig") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError:
        raise SourceError(f"{list_file}: list file is not UTF-8 text") from None
    except OSError as e:
        raise SourceError(f"{list_file}: cannot read list file ({e.strerror or e})") from None
    base = os.path.dirname(list_file)
    count = 0
    for number, line in enumerate(lines, start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = os.path.join(base, os.path.expanduser(entry))
        for tile in _expand(path, allow_list=False, where=f"{list_file}, line {number}: "):
            count += 1
            yield tile
    if count == 0:
        raise SourceError(f"{list_file}: list file names no images")
