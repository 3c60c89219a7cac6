"""Instance or binary masks, one per image, turned into boxes.

An *instance* mask is a label image (8/16/32-bit PNG or TIFF) in which each non-zero value is
one object; a *binary* mask marks object pixels (``value > threshold``) and each connected
component (``cv2.connectedComponentsWithStats``) is one object. Touching cells merge into one
component in a binary mask, so components larger than ``max_area`` / ``max_size`` or more
elongated than ``max_aspect`` become ignore regions instead of boxes; components smaller
than ``min_area`` are dropped as noise. A box is the tight box of the object's pixels in
hemoscan's pixel-edge convention: pixels ``c0..c1`` give ``x1 = c0``, ``x2 = c1 + 1``.

Every mask object gets the class ``class_map["mask"]`` (``"ignore"`` makes every object an
ignore region). Masks are matched to images by relative path / stem (``options.mask_suffix``,
e.g. ``"_mask"``, is removed from mask stems first) in ``masks/`` (``labels`` in the spec).
A partially labelled set declares ``supervised: []``: its objects are positives only.

``options.mode = "auto"`` (default) treats JPEG and multi-channel masks as binary, and any
other mask as binary if it holds a single non-zero value, else as instance labels. JPEG is
lossy, so binary JPEG masks are thresholded at ``> 127`` unless ``threshold`` says otherwise
(``> 0`` for lossless files). ``auto`` decides per file and cannot tell an 8-bit instance
mask from a binary mask with soft (anti-aliased) edges: set ``mode`` when you know it.
Multi-channel masks use ``channel`` (0 = R, 1 = G, 2 = B, 3 = alpha), or the maximum of R,
G and B.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tifffile

from hemoscan.annotations._common import (
    IMAGE_EXTENSIONS,
    Draft,
    finalize,
    find_dir,
    paired_drafts,
    parse_options,
)
from hemoscan.annotations.record import DROP, IGNORE, AnnotatedImage, AnnotationError
from hemoscan.annotations.spec import DatasetSpec

MASK_KEY = "mask"
_JPEG = (".jpg", ".jpeg")


@dataclass(frozen=True)
class MaskOptions:
    """See the module docstring. Sizes are in pixels of the mask (= the image)."""

    mode: str = "auto"
    threshold: float | None = None
    channel: int | None = None
    min_area: int = 16
    max_area: int | None = None
    max_size: float | None = None
    max_aspect: float | None = None
    connectivity: int = 8
    mask_suffix: str = ""

    def __post_init__(self) -> None:
        if self.mode not in ("auto", "instance", "binary"):
            raise ValueError(f"mode must be 'auto', 'instance' or 'binary', not {self.mode!r}")
        if self.connectivity not in (4, 8):
            raise ValueError("connectivity must be 4 or 8")
        if self.channel is not None and self.channel not in (0, 1, 2, 3):
            raise ValueError("channel must be 0 (R), 1 (G), 2 (B) or 3 (alpha)")
        if self.max_aspect is not None and self.max_aspect < 1:
            raise ValueError("max_aspect must be >= 1 (long side / short side)")


def read_mask(path: Path) -> np.ndarray:
    """A mask as stored: ``[H, W]`` or ``[H, W, C]`` with channels in R, G, B(, A) order."""
    try:
        if path.suffix.lower() in (".tif", ".tiff"):
            arr = np.asarray(tifffile.imread(path))
        else:
            buf = np.fromfile(path, dtype=np.uint8)
            arr = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED) if buf.size else None
            if arr is None:
                raise ValueError("cannot decode")
            if arr.ndim == 3 and arr.shape[2] in (3, 4):
                arr = arr[..., [2, 1, 0, 3][: arr.shape[2]]]
    except Exception as e:
        raise AnnotationError(f"{path}: cannot read the mask: {e}") from None
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    if arr.ndim not in (2, 3):
        raise AnnotationError(f"{path}: a mask must be one 2-D image, got shape {arr.shape}")
    return arr


def _plane(mask: np.ndarray, opts: MaskOptions, path: Path) -> np.ndarray:
    if mask.ndim == 2:
        return mask
    if opts.channel is not None:
        if opts.channel >= mask.shape[2]:
            raise AnnotationError(
                f"{path}: no channel {opts.channel} in a {mask.shape[2]}-channel mask"
            )
        return mask[..., opts.channel]
    return mask[..., :3].max(axis=2)


def _instance_objects(plane: np.ndarray) -> list[tuple[tuple[float, float, float, float], int]]:
    ys, xs = np.nonzero(plane)
    if not len(ys):
        return []
    values = plane[ys, xs]
    order = np.argsort(values, kind="stable")
    values, ys, xs = values[order], ys[order], xs[order]
    starts = np.concatenate([[0], np.flatnonzero(np.diff(values)) + 1])
    ends = np.append(starts[1:], len(values))
    x0, x1 = np.minimum.reduceat(xs, starts), np.maximum.reduceat(xs, starts)
    y0, y1 = np.minimum.reduceat(ys, starts), np.maximum.reduceat(ys, starts)
    return [
        ((float(a), float(b), float(c + 1), float(d + 1)), int(n))
        for a, b, c, d, n in zip(x0, y0, x1, y1, ends - starts, strict=True)
    ]


def _binary_objects(
    binary: np.ndarray, connectivity: int
) -> list[tuple[tuple[float, float, float, float], int]]:
    n, _, stats, _ = cv2.connectedComponentsWithStats(
        binary.astype(np.uint8), connectivity=connectivity
    )
    return [
        ((float(x), float(y), float(x + w), float(y + h)), int(area))
        for x, y, w, h, area in stats[1:n]
    ]


def _too_big(box: tuple[float, float, float, float], area: int, opts: MaskOptions) -> bool:
    w, h = box[2] - box[0], box[3] - box[1]
    return (
        (opts.max_area is not None and area > opts.max_area)
        or (opts.max_size is not None and max(w, h) > opts.max_size)
        or (opts.max_aspect is not None and max(w, h) / min(w, h) > opts.max_aspect)
    )


def objects_in_mask(
    mask: np.ndarray, path: Path, opts: MaskOptions
) -> tuple[list[tuple[float, float, float, float]], list[tuple[float, float, float, float]]]:
    """Boxes of the objects in one mask, and boxes of the components to ignore (too big)."""
    plane = _plane(mask, opts, path)
    jpeg = path.suffix.lower() in _JPEG
    mode = opts.mode
    if mode == "auto":
        if jpeg or mask.ndim == 3:
            mode = "binary"
        else:
            mode = "binary" if len(np.unique(plane[plane != 0])) <= 1 else "instance"
    if mode == "instance":
        if not np.issubdtype(plane.dtype, np.integer):
            raise AnnotationError(
                f"{path}: instance masks must hold integer labels, not {plane.dtype}"
            )
        objects = _instance_objects(plane)
    else:
        threshold = opts.threshold if opts.threshold is not None else (127 if jpeg else 0)
        objects = _binary_objects(plane > threshold, opts.connectivity)
    boxes, ignore = [], []
    for box, area in objects:
        if area < opts.min_area:
            continue
        (ignore if _too_big(box, area, opts) else boxes).append(box)
    return boxes, ignore


def read_masks(spec: DatasetSpec) -> list[AnnotatedImage]:
    """Read one mask per image (see the module docstring) into one record per image."""
    opts = parse_options(MaskOptions, spec)
    target = spec.map_class((MASK_KEY,), f"dataset {spec.name} (masks format: every mask object)")
    image_dir = find_dir(spec, spec.images, ("images", "."), "image")
    mask_dir = find_dir(spec, spec.labels, ("masks", "labels"), "mask")
    if mask_dir == image_dir:
        raise AnnotationError(
            f"dataset {spec.name}: masks must be in their own folder, not {image_dir}"
        )
    drafts: list[Draft] = []
    for draft, path in paired_drafts(
        spec,
        image_dir,
        mask_dir,
        IMAGE_EXTENSIONS,
        strip=opts.mask_suffix,
        stray_what="masks",
        missing_what="mask",
    ):
        drafts.append(draft)
        if path is None:
            continue
        mask = read_mask(path)
        w, h = draft.width, draft.height
        if mask.shape[:2] != (h, w):
            raise AnnotationError(
                f"{path}: mask is {mask.shape[1]}x{mask.shape[0]} but its image "
                f"{draft.image_path} is {w}x{h}"
            )
        boxes, ignore = objects_in_mask(mask, path, opts)
        for box in boxes:
            draft.add(box, target)
        if target != DROP:
            for box in ignore:
                draft.add(box, IGNORE)
    return finalize(spec, drafts)
