"""One entry point for every format: :func:`read_dataset` and :func:`read_datasets`."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from hemoscan.annotations.coco import read_coco
from hemoscan.annotations.masks import read_masks
from hemoscan.annotations.qupath import read_qupath
from hemoscan.annotations.record import AnnotatedImage, AnnotationError
from hemoscan.annotations.spec import DatasetSpec
from hemoscan.annotations.voc import read_voc
from hemoscan.annotations.yolo import read_yolo

READERS: dict[str, Callable[[DatasetSpec], list[AnnotatedImage]]] = {
    "yolo": read_yolo,
    "coco": read_coco,
    "voc": read_voc,
    "qupath": read_qupath,
    "masks": read_masks,
}


def read_dataset(
    spec: DatasetSpec | Mapping[str, Any], base_dir: Path | None = None
) -> list[AnnotatedImage]:
    """Read one dataset; ``spec`` may be a :class:`DatasetSpec` or its dict form (a relative
    ``root`` in a dict is taken relative to ``base_dir``). Records come in image-path order
    (COCO: the JSON's image order; VOC: XML order)."""
    if not isinstance(spec, DatasetSpec):
        spec = DatasetSpec.from_dict(spec, base_dir)
    if not spec.root.exists():
        raise AnnotationError(f"dataset {spec.name}: root {spec.root} does not exist")
    return READERS[spec.format](spec)


def read_datasets(
    specs: Iterable[DatasetSpec | Mapping[str, Any]], base_dir: Path | None = None
) -> list[list[AnnotatedImage]]:
    """Read several datasets (e.g. a training config's list), one list of records each."""
    return [read_dataset(s, base_dir) for s in specs]
