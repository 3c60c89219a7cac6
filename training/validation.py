"""Validation during training: held-out images, predictions and AP50 per class.

A :class:`ValImage` is one whole held-out image at the model's red-cell scale, normalised and
zero-padded (in normalised units) to multiples of 32, with its truth in the same pixels.
:func:`validate` runs the model over them and returns AP50 per class with
:func:`hemoscan_training.metrics.ap_per_class` (COCO 101-point AP; a class counts only on images
that supervise it, predictions in ignore regions are not counted).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from hemoscan.inference.postprocess import decode_heatmaps, suppress_duplicates

from .composed import DEV_SEED, ComposedSet
from .images import MEAN, STD, load_rgb, rescale
from .metrics import ImageDetections, ImageTruth, ap_per_class
from .splits import CLASSES, MARROW_UNSUPERVISED, txl_part

#: Score floor of validation predictions (AP integrates over every score above it).
SCORE_FLOOR = 0.01
NMS_IOU = 0.5


@dataclass(frozen=True)
class ValImage:
    """``image``: float32 ``[3, H, W]``, normalised, H and W multiples of 32. ``truth``: boxes
    (``[N, 4]`` in the image's pixels), class indices (int64 ``[N]``), ignore regions and the
    classes the image does not label exhaustively (see :class:`~hemoscan_training.metrics.ImageTruth`)."""

    image: torch.Tensor
    truth: ImageTruth


def to_val_image(
    rgb: np.ndarray,
    boxes: np.ndarray,
    labels: np.ndarray,
    mean: np.ndarray,
    std: np.ndarray,
    ignore: np.ndarray | None = None,
    unsupervised: frozenset[int] = frozenset(),
) -> ValImage:
    """Normalise uint8 RGB ``[H, W, 3]`` with ``mean``/``std`` (0-255 units) and zero-pad it."""
    h, w = rgb.shape[:2]
    x = np.zeros((3, -(-h // 32) * 32, -(-w // 32) * 32), np.float32)
    x[:, :h, :w] = ((rgb.astype(np.float32) - mean) / std).transpose(2, 0, 1)
    truth = ImageTruth(
        np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(labels, np.int64),
        ignore=np.zeros((0, 4), np.float32) if ignore is None else np.asarray(ignore, np.float32),
        unsupervised=unsupervised,
    )  # fmt: skip
    return ValImage(torch.from_numpy(x), truth)


def composed_val_set(
    data_root: Path, n: int, rbc_diameter_px: float = 40.0, seed: int = 1234
) -> list[ValImage]:
    """The composed recipe's validation set: ``n`` fixed TXL-PBC dev fields (held out of
    training for model selection), rescaled so red cells are ``rbc_diameter_px``."""
    items = txl_part(Path(data_root) / "txl-pbc", "dev")
    pick = sorted(
        np.random.default_rng(seed).choice(len(items), size=min(n, len(items)), replace=False)
    )
    out = []
    for k in pick:
        item = items[int(k)]
        img, boxes = rescale(load_rgb(item.path), item.boxes, rbc_diameter_px / item.rbc_diameter)
        out.append(to_val_image(img, boxes[:, :4], boxes[:, 4].astype(np.int64), MEAN, STD))
    return out


def composed_dev_images(data_root: Path, n: int) -> list[ValImage]:
    """``n`` fixed COMPOSED dev fields (:data:`~hemoscan_training.composed.DEV_SEED`: training
    parts in arrangements training never draws, v2's host recipe), so hemophagocytes and
    macrophages can take part in model selection. Marrow-background fields do not supervise
    rbc, platelet or nucleated."""
    fields = ComposedSet(Path(data_root), "train", DEV_SEED, n)
    out = []
    for i in range(n):
        f = fields.field(i)
        labels = np.array([CLASSES.index(label) for label in f.record.labels], np.int64)
        marrow = f.background == "segpc-marrow"
        unsupervised = frozenset(MARROW_UNSUPERVISED) if marrow else frozenset()
        out.append(to_val_image(f.image, f.record.boxes, labels, MEAN, STD,
                                unsupervised=unsupervised))  # fmt: skip
    return out


@torch.inference_mode()
def predict(
    model: nn.Module, val: Sequence[ValImage], classes: tuple[str, ...], device: str = "cpu"
) -> list[ImageDetections]:
    """Every peak above :data:`SCORE_FLOOR` after duplicate suppression, per image (the model
    is put in eval mode)."""
    model.eval()
    thresholds = np.full(len(classes), SCORE_FLOOR, np.float32)
    stride = int(getattr(model, "stride", 8))
    preds = []
    for v in val:
        heat, size, off = (t.float().cpu().numpy() for t in model(v.image[None].to(device)))
        boxes, scores, labels = decode_heatmaps(heat[0], size[0], off[0], stride, thresholds, 1000)
        keep = suppress_duplicates(boxes, scores, labels, classes, NMS_IOU)
        preds.append(ImageDetections(boxes[keep], scores[keep], labels[keep]))
    return preds


def ap50(
    preds: Sequence[ImageDetections],
    val: Sequence[ValImage],
    classes: tuple[str, ...],
    eval_classes: Sequence[str],
) -> dict[str, float]:
    """AP50 of each of ``eval_classes`` (NaN where no image that supervises it holds it)."""
    return ap_per_class(preds, [v.truth for v in val], {c: classes.index(c) for c in eval_classes})


def validate(
    model: nn.Module,
    val: Sequence[ValImage],
    classes: tuple[str, ...],
    eval_classes: Sequence[str],
    device: str = "cpu",
) -> dict[str, float]:
    """:func:`predict` then :func:`ap50`."""
    return ap50(predict(model, val, classes, device), val, classes, eval_classes)
