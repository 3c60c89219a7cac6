"""Dataset readers: researchers' annotation formats -> one common :class:`AnnotatedImage`.

Formats: YOLO txt, COCO JSON, Pascal VOC XML, QuPath GeoJSON and instance/binary masks, each
described by a :class:`DatasetSpec` (format, paths, ``class_map``, ``supervised``, options)
and read with :func:`read_dataset`. Boxes are ``x1, y1, x2, y2`` float pixels, origin at the
top-left corner of the image (see :mod:`hemoscan.annotations.record`).

Partially labelled sets: ``class_map`` may send a source class to ``"ignore"`` (its boxes
become ignore regions where nothing is supervised) or ``"drop"``; ``supervised`` lists the
classes whose absence is meaningful (``[]``: positives only, e.g. a plasma-cell-only set).
"""

from hemoscan.annotations.coco import CocoOptions, read_coco
from hemoscan.annotations.masks import MaskOptions, read_masks
from hemoscan.annotations.qupath import QupathOptions, read_qupath
from hemoscan.annotations.readers import READERS, read_dataset, read_datasets
from hemoscan.annotations.record import (
    ANNOTATION_CLASSES,
    DROP,
    ENGULFED_CLASSES,
    HOST_CLASS,
    IGNORE,
    AnnotatedImage,
    AnnotationError,
    AnnotationWarning,
    infer_parents,
)
from hemoscan.annotations.spec import FORMATS, DatasetSpec
from hemoscan.annotations.voc import VocOptions, read_voc
from hemoscan.annotations.yolo import YoloOptions, read_yolo

__all__ = [
    "ANNOTATION_CLASSES",
    "DROP",
    "ENGULFED_CLASSES",
    "FORMATS",
    "HOST_CLASS",
    "IGNORE",
    "READERS",
    "AnnotatedImage",
    "AnnotationError",
    "AnnotationWarning",
    "CocoOptions",
    "DatasetSpec",
    "MaskOptions",
    "QupathOptions",
    "VocOptions",
    "YoloOptions",
    "infer_parents",
    "read_coco",
    "read_dataset",
    "read_datasets",
    "read_masks",
    "read_qupath",
    "read_voc",
    "read_yolo",
]
