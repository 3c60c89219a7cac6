"""Pascal VOC XML: one ``<annotation>`` file per image.

VOC ``bndbox`` values are 1-based, inclusive pixel indices: ``xmin = 1`` is the first pixel
column and ``xmax`` the last column *inside* the box. In hemoscan's convention (0-based pixel
edges, see :mod:`hemoscan.annotations.record`) that is ``x1 = xmin - 1``, ``y1 = ymin - 1``,
``x2 = xmax``, ``y2 = ymax`` (the same conversion as Detectron2's). Tools that write 0-based
edge coordinates into VOC files (some exporters do) need ``options.one_based = false``, which
takes the values as they are.

``object/name`` is looked up in ``class_map``; ``difficult = 1`` objects become ignore regions
by default (``options.difficult``: ``"ignore"``, ``"keep"`` as normal boxes, or ``"drop"``).

Layout: ``Annotations/`` (or ``annotations/``, ``labels/``, or the image folder) and
``JPEGImages/`` (or ``images/``, or the root). The image is found from ``<filename>``, else by
the XML's stem. With ``split``, ``ImageSets/Main/<split>.txt`` lists the stems to read if it
exists; otherwise ``split`` is a sub-folder. In folder mode, images without an XML file are
taken as having no objects (with a warning).
"""

from __future__ import annotations

import dataclasses
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from hemoscan.annotations._common import (
    Draft,
    finalize,
    find_dir,
    image_size,
    list_files,
    list_images,
    listing,
    parse_options,
    warn,
)
from hemoscan.annotations.record import DROP, IGNORE, AnnotatedImage, AnnotationError
from hemoscan.annotations.spec import DatasetSpec


@dataclass(frozen=True)
class VocOptions:
    """``difficult``: what ``difficult = 1`` objects become (``ignore``/``keep``/``drop``).
    ``one_based``: convert 1-based inclusive indices (VOC) to 0-based edges.
    ``missing_images``: ``"error"`` or ``"skip"`` (warned) for XMLs whose image is absent."""

    difficult: str = "ignore"
    one_based: bool = True
    missing_images: str = "error"

    def __post_init__(self) -> None:
        if self.difficult not in ("ignore", "keep", "drop"):
            raise ValueError(
                f"difficult must be 'ignore', 'keep' or 'drop', not {self.difficult!r}"
            )
        if self.missing_images not in ("error", "skip"):
            raise ValueError(
                f"missing_images must be 'error' or 'skip', not {self.missing_images!r}"
            )
        if not isinstance(self.one_based, bool):
            raise ValueError("one_based must be true or false")


def _float(node: ET.Element, tag: str, where: str) -> float:
    text = node.findtext(tag)
    try:
        value = float(text) if text is not None else math.nan
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise AnnotationError(f"{where}: <{tag}> is missing or not a number ({text!r})")
    return value


def _size(root: ET.Element) -> tuple[int, int] | None:
    size = root.find("size")
    if size is None:
        return None
    try:
        w, h = int(float(size.findtext("width") or 0)), int(float(size.findtext("height") or 0))
    except ValueError:
        return None
    return (w, h) if w > 0 and h > 0 else None


def read_voc(spec: DatasetSpec) -> list[AnnotatedImage]:
    """Read a Pascal VOC dataset (see the module docstring) into one record per image."""
    opts = parse_options(VocOptions, spec)
    split_list = spec.root / "ImageSets" / "Main" / f"{spec.split}.txt" if spec.split else None
    use_list = split_list is not None and split_list.is_file()
    folders = dataclasses.replace(spec, split=None) if use_list else spec
    image_dir = find_dir(folders, spec.images, ("JPEGImages", "images", "."), "image")
    ann_dir = find_dir(
        folders, spec.labels, ("Annotations", "annotations", "labels", "."), "annotation"
    )
    images = list_images(image_dir, exclude=ann_dir)
    by_key: dict[str, Path] = {}
    for img in images:
        by_key.setdefault(img.relative_to(image_dir).with_suffix("").as_posix(), img)
        by_key.setdefault(img.stem, img)

    if use_list:
        assert split_list is not None
        stems = [
            s.split()[0] for s in split_list.read_text(encoding="utf-8").splitlines() if s.strip()
        ]
        xmls = [ann_dir / f"{s}.xml" for s in stems]
        absent = [x.name for x in xmls if not x.is_file()]
        if absent:
            raise AnnotationError(
                f"{split_list}: {len(absent)} listed XML files missing in {ann_dir}: "
                f"{listing(absent)}"
            )
    else:
        xmls = list_files(ann_dir, (".xml",))

    drafts: list[Draft] = []
    used: set[Path] = set()
    missing: list[str] = []
    for xml in xmls:
        try:
            root = ET.parse(xml).getroot()
        except (ET.ParseError, OSError) as e:
            raise AnnotationError(f"{xml}: not a readable XML file: {e}") from None
        if root.tag != "annotation":
            raise AnnotationError(f"{xml}: not a VOC annotation (root element <{root.tag}>)")
        filename = (root.findtext("filename") or "").strip()
        path = None
        for cand in (image_dir / filename, image_dir / Path(filename).name) if filename else ():
            if cand.is_file():
                path = cand
                break
        if path is None:
            path = by_key.get(xml.relative_to(ann_dir).with_suffix("").as_posix()) or by_key.get(
                xml.stem
            )
        if path is None:
            if opts.missing_images == "error":
                raise AnnotationError(
                    f"{xml}: its image {filename or xml.stem!r} is not in {image_dir}"
                )
            missing.append(xml.name)
            continue
        if path in used:
            raise AnnotationError(f"{xml}: a second XML file for image {path}")
        used.add(path)
        w, h = image_size(path)
        declared = _size(root)
        if declared is not None and declared != (w, h):
            raise AnnotationError(
                f"{xml}: <size> says {declared[0]}x{declared[1]} but {path} is {w}x{h}; "
                "were the images resized?"
            )
        draft = Draft(path, w, h, source=xml)
        drafts.append(draft)
        for k, obj in enumerate(root.iter("object")):
            where = f"{xml}: object {k + 1}"
            name = (obj.findtext("name") or "").strip()
            if not name:
                raise AnnotationError(f"{where}: no <name>")
            bnd = obj.find("bndbox")
            if bnd is None:
                raise AnnotationError(f"{where} ({name}): no <bndbox>")
            x1, y1, x2, y2 = (_float(bnd, t, where) for t in ("xmin", "ymin", "xmax", "ymax"))
            if opts.one_based:
                x1, y1 = x1 - 1, y1 - 1
            target = spec.map_class((name,), where)
            if (obj.findtext("difficult") or "0").strip() in (
                "1",
                "true",
                "True",
            ) and target != DROP:
                target = {"ignore": IGNORE, "drop": DROP, "keep": target}[opts.difficult]
            draft.add((x1, y1, x2, y2), target)
    if missing:
        warn(
            f"dataset {spec.name}: skipped {len(missing)} XML files whose image is missing: "
            f"{listing(missing)}"
        )
    if not use_list:
        unlabelled = [img for img in images if img not in used]
        if unlabelled:
            warn(
                f"dataset {spec.name}: {len(unlabelled)} images have no XML file in {ann_dir} and "
                f"are taken as having no objects: {listing([p.name for p in unlabelled])}"
            )
            drafts.extend(Draft(img, *image_size(img)) for img in unlabelled)
    if not drafts:
        raise AnnotationError(f"dataset {spec.name}: no annotated images in {ann_dir}")
    return finalize(spec, drafts)
