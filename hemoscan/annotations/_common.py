"""Shared reader plumbing: locating folders, pairing images with annotation files, image
sizes, option parsing, and turning drafts into validated :class:`AnnotatedImage` records."""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from hemoscan.annotations.record import (
    CLIP_TOLERANCE_PX,
    DROP,
    IGNORE,
    AnnotatedImage,
    AnnotationError,
    AnnotationWarning,
    infer_parents,
)
from hemoscan.annotations.spec import DatasetSpec
from hemoscan.io.images import SUPPORTED_EXTENSIONS

IMAGE_EXTENSIONS: tuple[str, ...] = (*SUPPORTED_EXTENSIONS, ".bmp")
Box = tuple[float, float, float, float]
OptionsT = TypeVar("OptionsT")


def warn(message: str, stacklevel: int = 3) -> None:
    """Warn as coming from the caller of the function that calls this (``stacklevel`` deeper
    for helpers called by readers)."""
    warnings.warn(message, AnnotationWarning, stacklevel=stacklevel)


def listing(items: Sequence[Any], limit: int = 5) -> str:
    """``a, b, c`` or ``a, b, c, ... (12 in all)``."""
    shown = ", ".join(str(x) for x in items[:limit])
    return shown if len(items) <= limit else f"{shown}, ... ({len(items)} in all)"


def parse_options(cls: type[OptionsT], spec: DatasetSpec) -> OptionsT:
    """``cls(**spec.options)``, with unknown keys and bad values reported as AnnotationError."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(spec.options) - known)
    if unknown:
        raise AnnotationError(
            f"dataset {spec.name}: unknown {spec.format} options {unknown}; known: {sorted(known)}"
        )
    try:
        return cls(**spec.options)
    except (TypeError, ValueError) as e:
        raise AnnotationError(f"dataset {spec.name}: bad {spec.format} options: {e}") from None


# --------------------------------------------------------------------------- locating files
def find_dir(spec: DatasetSpec, explicit: Path | None, defaults: Sequence[str], what: str) -> Path:
    """``explicit`` (relative to root) or the first default sub-folder (``/split`` appended when
    the spec has one) that exists. ``"."`` stands for the root itself."""
    if explicit is not None:
        path = spec.path(explicit)
        if not path.is_dir():
            raise AnnotationError(f"dataset {spec.name}: {what} folder {path} does not exist")
        return path
    tried = []
    for d in defaults:
        path = spec.root / d if d != "." else spec.root
        if spec.split:
            path = path / spec.split
        tried.append(path)
        if path.is_dir():
            return path
    raise AnnotationError(
        f"dataset {spec.name}: no {what} folder found (tried {listing(tried)}); "
        f"set '{'labels' if what != 'image' else 'images'}' in the dataset spec"
    )


def _visible(path: Path, base: Path) -> bool:
    return not any(part.startswith(".") for part in path.relative_to(base).parts)


def list_files(folder: Path, suffixes: Iterable[str], exclude: Path | None = None) -> list[Path]:
    """Files under ``folder`` (recursive, sorted) whose suffix is in ``suffixes``
    (case-insensitive), skipping hidden files and folders and, when ``exclude`` is a strict
    sub-folder of ``folder`` (e.g. ``masks/`` inside the image folder), everything in it."""
    wanted = {s.lower() for s in suffixes}
    if exclude is not None and (exclude == folder or not exclude.is_relative_to(folder)):
        exclude = None  # only a strict sub-folder is excluded
    out = []
    for p in folder.rglob("*"):
        if p.suffix.lower() not in wanted or not p.is_file() or not _visible(p, folder):
            continue
        if exclude is not None and p.is_relative_to(exclude):
            continue
        out.append(p)
    return sorted(out)


def list_images(folder: Path, exclude: Path | None = None) -> list[Path]:
    return list_files(folder, IMAGE_EXTENSIONS, exclude)


def _image_keys(image: Path, image_dir: Path) -> list[str]:
    rel = image.relative_to(image_dir)
    noext = rel.with_suffix("")
    keys = [
        noext.as_posix(),
        rel.as_posix(),
        "__".join(noext.parts),
        "__".join(rel.parts),
        image.stem,
        image.name,
    ]
    return list(dict.fromkeys(keys))


def _label_key(path: Path, label_dir: Path, suffixes: Sequence[str], strip: str) -> str:
    rel = path.relative_to(label_dir).as_posix()
    for s in sorted(suffixes, key=len, reverse=True):
        if rel.lower().endswith(s.lower()):
            rel = rel[: len(rel) - len(s)]
            break
    if strip and rel.endswith(strip):
        rel = rel[: len(rel) - len(strip)]
    return rel


def match_files(
    images: Sequence[Path],
    image_dir: Path,
    label_dir: Path,
    suffixes: Sequence[str],
    strip: str = "",
    exclude: Path | None = None,
) -> tuple[dict[Path, Path], list[Path]]:
    """Pair each image with the annotation file of the same name.

    An annotation file ``labels/<rel>/<stem><suffix>`` (``strip`` removed from the end of its
    stem, e.g. ``"_mask"``) matches the image at the same relative path with any image
    extension, the image's full name (``x.png.geojson``), the path joined with ``__`` (as
    hemoscan's exports name files), or, for a flat label folder, the image's bare stem.
    Returns ``{image: file}`` and the annotation files that match no image (sorted).
    """
    image_set = set(images)
    files = [f for f in list_files(label_dir, suffixes, exclude) if f not in image_set]
    index: dict[str, Path] = {}
    for f in files:
        index.setdefault(_label_key(f, label_dir, suffixes, strip), f)
    matched: dict[Path, Path] = {}
    used: dict[Path, Path] = {}
    for image in images:
        for key in _image_keys(image, image_dir):
            f = index.get(key)
            if f is None:
                continue
            if f in used:
                raise AnnotationError(
                    f"{f}: matches two images, {used[f]} and {image}; give the annotation files "
                    "the same sub-folders as the images"
                )
            used[f] = image
            matched[image] = f
            break
    stray = [f for f in files if f not in used]
    return matched, stray


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image as stored, from its header."""
    try:
        with Image.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except FileNotFoundError:
        raise AnnotationError(f"{path}: image not found") from None
    except (UnidentifiedImageError, OSError, ValueError) as e:
        if path.suffix.lower() in (".tif", ".tiff"):
            try:
                with tifffile.TiffFile(path) as tif:
                    shape = tif.pages[0].shape
                    return int(shape[1]), int(shape[0])
            except Exception:
                pass
        raise AnnotationError(f"{path}: cannot read the image size: {e}") from None


# --------------------------------------------------------------------------- drafts -> records
@dataclass
class Draft:
    """A record being built: boxes in pixels, classes already mapped."""

    image_path: Path
    width: int
    height: int
    source: Path | None = None
    boxes: list[Box] = field(default_factory=list)
    labels: list[str] = field(default_factory=list)
    parents: list[int] = field(default_factory=list)
    ignore: list[Box] = field(default_factory=list)
    #: Optional test ``contains(box_index, x, y)`` used to find the host of engulfed boxes.
    contains: Callable[[int, float, float], bool] | None = None

    def add(self, box: Box, target: str, parent: int = -1) -> int | None:
        """Add an object mapped to ``target``; returns its box index, or None if it became an
        ignore region or was dropped."""
        if target == DROP:
            return None
        if target == IGNORE:
            self.ignore.append(box)
            return None
        self.boxes.append(box)
        self.labels.append(target)
        self.parents.append(parent)
        return len(self.boxes) - 1


def paired_drafts(
    spec: DatasetSpec,
    image_dir: Path,
    label_dir: Path,
    suffixes: Sequence[str],
    *,
    stray_what: str,
    missing_what: str,
    strip: str = "",
) -> Iterator[tuple[Draft, Path | None]]:
    """One empty :class:`Draft` per image in ``image_dir`` (``label_dir`` excluded), with its
    annotation file (see :func:`match_files`) or None.

    Raises when there are no images; warns (eagerly) about annotation files that match no
    image, naming them ``stray_what`` (e.g. ``".txt files"``), and, once every draft has been
    taken, about the images without one, named ``missing_what`` (e.g. ``"label file"``).
    """
    images = list_images(image_dir, exclude=label_dir)
    if not images:
        raise AnnotationError(f"dataset {spec.name}: no images in {image_dir}")
    matched, stray = match_files(images, image_dir, label_dir, suffixes, strip=strip)
    if stray:
        warn(
            f"dataset {spec.name}: skipped {len(stray)} {stray_what} in {label_dir} that match "
            f"no image: {listing([s.relative_to(label_dir).as_posix() for s in stray])}",
            stacklevel=4,
        )
    return _drafts_for(spec, images, matched, label_dir, missing_what)


def _drafts_for(
    spec: DatasetSpec,
    images: Sequence[Path],
    matched: dict[Path, Path],
    label_dir: Path,
    missing_what: str,
) -> Iterator[tuple[Draft, Path | None]]:
    missing: list[str] = []
    for image in images:
        w, h = image_size(image)
        path = matched.get(image)
        if path is None:
            missing.append(image.name)
        yield Draft(image, w, h, source=path), path
    if missing:
        warn(
            f"dataset {spec.name}: {len(missing)} images have no {missing_what} in {label_dir} "
            f"and are taken as having no objects: {listing(missing)}",
            stacklevel=4,
        )


def finalize(
    spec: DatasetSpec, drafts: Sequence[Draft], declared: Iterable[str] | None = None
) -> list[AnnotatedImage]:
    """Resolve ``supervised`` (what the data ``declared`` applies unless the spec names
    classes), infer engulfed parents, validate and clip every draft.

    Clipping notes are gathered into one warning for the whole dataset.
    """
    found = {label for d in drafts for label in d.labels}
    supervised = spec.resolve_supervised(found, declared)
    records: list[AnnotatedImage] = []
    notes: list[str] = []
    for d in drafts:
        boxes = np.array(d.boxes, np.float32).reshape(-1, 4)
        parents = infer_parents(boxes, d.labels, d.parents, d.contains)
        record = AnnotatedImage(
            image_path=d.image_path,
            width=d.width,
            height=d.height,
            boxes=boxes,
            labels=tuple(d.labels),
            parents=parents,
            ignore=np.array(d.ignore, np.float32).reshape(-1, 4),
            supervised=supervised,
            source=d.source,
        )
        record, rec_notes = record.checked(CLIP_TOLERANCE_PX)
        notes.extend(f"{record.where}: {n}" for n in rec_notes)
        records.append(record)
    if notes:
        warn(f"dataset {spec.name}: {len(notes)} clipping notes: {listing(notes, 3)}")
    return records
