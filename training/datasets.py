"""Training data sources selected by ``data.source``: the ``composed`` recipe or ``annotated`` sets.

Both yield samples as dicts of tensors for :func:`hemoscan_training.losses.detection_loss`:
``image`` float32 ``[3, S, S]`` (normalised), ``heatmap [K, g, g]``, ``log_size``,
``offset [2, g, g]``, ``reg_mask [1, g, g]``, ``neg_weight [K]`` and, for annotated sets,
``neg_mask [1, g, g]`` (0 inside ignore regions), with ``S`` the crop and ``g = S / stride``.
Sample ``i`` is fully determined by ``(seed, i)``, so a run resumes from the sample index.

Annotated sets are read with :func:`hemoscan.annotations.read_dataset`, each image resized so
its red cells are the model's ``rbc_diameter_px`` (times a random scale), cropped at random,
augmented (stain/HED, hue, saturation, brightness, blur, JPEG, noise, flips, 90-degree turns).
Classes missing from an image's ``supervised`` set get no negatives; boxes cut by the crop
border beyond recognition, and ignore regions, get no negatives at all.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.core.transforms_interface import ImageOnlyTransform
from torch.utils.data import Dataset

from .config import DATASET_EXTRA_KEYS, AugmentSection, ConfigError, TrainConfig
from .data import ComposedCrops
from .images import border_colour, load_rgb
from .targets import make_targets
from .validation import ValImage, composed_dev_images, composed_val_set, to_val_image

#: A box shorter than this fraction of its length inside the crop becomes an ignore region.
MIN_VISIBLE = 0.4
#: Images with at least this many red-cell boxes measure their own red-cell size.
MIN_RBC_FOR_OWN_SCALE = 3


# --------------------------------------------------------------------------- reading
@dataclass(frozen=True)
class SourceImage:
    """One annotated image, ready to crop.

    ``scale``: resize factor bringing its red cells to the model's ``rbc_diameter_px``.
    ``boxes``: float32 ``[N, 5]`` ``x1, y1, x2, y2, class index`` in the image's pixels.
    ``ignore``: float32 ``[M, 4]`` regions without any negatives.
    ``neg_weight``: float32 ``[K]``, 1 for classes whose absence is labelled, else 0.
    """

    path: Path
    scale: float
    boxes: np.ndarray
    ignore: np.ndarray
    neg_weight: np.ndarray


def load_image(path: Path) -> np.ndarray:
    """uint8 RGB ``[H, W, 3]``, decoded as ``hemoscan scan`` decodes (other formats: OpenCV)."""
    from hemoscan.io.images import SUPPORTED_EXTENSIONS, read_tile

    return read_tile(path) if path.suffix.lower() in SUPPORTED_EXTENSIONS else load_rgb(path)


def _median_rbc(boxes: np.ndarray) -> list[float]:
    return ((boxes[:, 2] - boxes[:, 0] + boxes[:, 3] - boxes[:, 1]) / 2).tolist()


def read_sources(
    entries: Sequence[dict[str, Any]], classes: tuple[str, ...], rbc_diameter_px: float, key: str
) -> list[list[SourceImage]]:
    """Read every dataset entry of ``data.train`` / ``data.val`` (``key``), one list each.

    The scale is ``rbc_diameter_px / entry.rbc_diameter_px``, or ``entry.scale``, or else
    measured: the median red-cell box size of the image (when it has at least
    :data:`MIN_RBC_FOR_OWN_SCALE`), otherwise of the whole dataset.
    """
    from hemoscan.annotations import AnnotationError, DatasetSpec, read_dataset

    out = []
    for i, entry in enumerate(entries):
        where = f"{key}[{i}]"
        try:
            spec = DatasetSpec.from_dict(
                {k: v for k, v in entry.items() if k not in DATASET_EXTRA_KEYS}
            )
            records = read_dataset(spec)
        except AnnotationError as e:
            raise ConfigError(f"{where}: {e}") from None
        if not records:
            raise ConfigError(f"{where} ({spec.name}): no images found")
        rbc = [[b for b, lab in zip(r.boxes, r.labels) if lab == "rbc"] for r in records]
        pooled = [d for boxes in rbc if boxes for d in _median_rbc(np.array(boxes))]
        images = []
        for rec, rbc_boxes in zip(records, rbc):
            if "scale" in entry:
                scale = float(entry["scale"])
            elif "rbc_diameter_px" in entry:
                scale = rbc_diameter_px / float(entry["rbc_diameter_px"])
            elif len(rbc_boxes) >= MIN_RBC_FOR_OWN_SCALE:
                scale = rbc_diameter_px / float(np.median(_median_rbc(np.array(rbc_boxes))))
            elif pooled:
                scale = rbc_diameter_px / float(np.median(pooled))
            else:
                raise ConfigError(
                    f"{where} ({spec.name}): no rbc boxes to measure the red-cell size from; "
                    "set rbc_diameter_px (the red-cell diameter in this set's pixels) or scale"
                )
            try:
                labels = rec.label_indices(classes)
            except AnnotationError as e:
                raise ConfigError(f"{where}: {e} (model.classes)") from None
            boxes = np.concatenate([rec.boxes, labels[:, None].astype(np.float32)], 1)
            neg = rec.supervised_mask(classes).astype(np.float32)
            images.append(
                SourceImage(rec.image_path, scale, boxes.reshape(-1, 5), rec.ignore.copy(), neg)
            )
        out.append(images)
    return out


def split_val(
    datasets: list[list[SourceImage]], fraction: float, seed: int
) -> tuple[list[list[SourceImage]], list[SourceImage]]:
    """Hold out ``fraction`` of each dataset's images (at least one where it has two or
    more), chosen with ``np.random.default_rng([seed, dataset index])``."""
    train, val = [], []
    for i, images in enumerate(datasets):
        n_val = 0 if fraction <= 0 or len(images) < 2 else max(1, round(fraction * len(images)))
        held = set(np.random.default_rng([seed, i]).permutation(len(images))[:n_val].tolist())
        train.append([im for j, im in enumerate(images) if j not in held])
        val.extend(im for j, im in enumerate(images) if j in held)
    return train, val


def subsample(images: list[SourceImage], fraction: float, seed: int) -> list[SourceImage]:
    """A seeded ``fraction`` of ``images`` (at least one), in their order."""
    if fraction >= 1 or not images:
        return images
    n = max(1, math.ceil(fraction * len(images)))
    keep = sorted(np.random.default_rng([seed, 1]).permutation(len(images))[:n].tolist())
    return [images[j] for j in keep]


# --------------------------------------------------------------------------- augmentation
# Ruifrok & Johnston's haematoxylin / eosin / DAB optical densities (rows: stains; cols: RGB)
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]], np.float32)
RGB_FROM_HED /= np.linalg.norm(RGB_FROM_HED, axis=1, keepdims=True)
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED).astype(np.float32)


class HedJitter(ImageOnlyTransform):
    """Stain variation: colour deconvolution into H, E and DAB concentrations, each scaled by
    ``U(1 - sigma, 1 + sigma)`` and shifted by ``U(-bias, bias)``, then recomposed (Tellez et
    al. 2018). uint8 RGB in and out."""

    def __init__(self, sigma: float = 0.05, bias: float = 0.05, p: float = 0.5) -> None:
        super().__init__(p=p)
        self.sigma, self.bias = sigma, bias

    def get_params(self) -> dict[str, np.ndarray]:
        g = self.random_generator
        return {"alpha": g.uniform(1 - self.sigma, 1 + self.sigma, 3).astype(np.float32),
                "beta": g.uniform(-self.bias, self.bias, 3).astype(np.float32)}  # fmt: skip

    def apply(
        self, img: np.ndarray, alpha: np.ndarray, beta: np.ndarray, **params: Any
    ) -> np.ndarray:
        od = -np.log((img.astype(np.float32) + 1.0) / 256.0)
        hed = od.reshape(-1, 3) @ HED_FROM_RGB
        hed = hed * alpha + beta
        rgb = 256.0 * np.exp(-(hed @ RGB_FROM_HED)) - 1.0
        return np.clip(rgb, 0, 255).reshape(img.shape).astype(np.uint8)

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return ("sigma", "bias")


def build_augment(cfg: AugmentSection) -> A.Compose | None:
    """The annotated crops' albumentations pipeline (transforms with probability 0 left out;
    ``None`` when none is left). Call with ``image`` (uint8 RGB), ``mask`` (the ignore raster),
    ``bboxes`` (pascal_voc) and ``labels``; flips and 90-degree turns keep every box whole."""
    t: list[Any] = []
    if cfg.p_hed and cfg.hed:
        t.append(HedJitter(cfg.hed, cfg.hed, p=cfg.p_hed))
    if cfg.p_hsv:
        t.append(A.HueSaturationValue(cfg.hue, cfg.saturation, cfg.value, p=cfg.p_hsv))
    if cfg.p_brightness:
        t.append(A.RandomBrightnessContrast(cfg.brightness, cfg.contrast, p=cfg.p_brightness))
    if cfg.p_blur:
        t.append(
            A.OneOf(
                [A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 7))], p=cfg.p_blur
            )
        )
    if cfg.p_jpeg:
        t.append(A.ImageCompression(quality_range=cfg.jpeg_quality, p=cfg.p_jpeg))
    if cfg.p_noise:
        t.append(A.GaussNoise(std_range=(0.01, 0.04), p=cfg.p_noise))
    if cfg.flips:
        t += [A.HorizontalFlip(), A.VerticalFlip(), A.RandomRotate90()]
    if not t:
        return None
    return A.Compose(t, bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"]))


# --------------------------------------------------------------------------- crops
def crop_with_ignore(
    img: np.ndarray, boxes: np.ndarray, ignore: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A random ``size`` square crop (padded with the border colour where the image is
    smaller). Boxes are clipped; a box keeping less than :data:`MIN_VISIBLE` of its area
    becomes an ignore region (a cut cell is neither a positive nor background).
    Returns the crop, boxes ``[N, 5]`` and ignore regions ``[M, 4]`` in crop pixels."""
    h, w = img.shape[:2]
    left = top = 0
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        top, left = int(rng.integers(0, ph + 1)), int(rng.integers(0, pw + 1))
        img = cv2.copyMakeBorder(img, top, ph - top, left, pw - left, cv2.BORDER_CONSTANT,
                                 value=border_colour(img))  # fmt: skip
        h, w = img.shape[:2]
    y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    shift = np.array([left - x0, top - y0] * 2, np.float32)
    b = boxes.copy()
    b[:, :4] += shift
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    b[:, :4] = np.clip(b[:, :4], 0, size)
    visible = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    keep = visible >= MIN_VISIBLE * np.maximum(area, 1e-6)
    cut = b[~keep & (visible > 0), :4]
    ign = np.clip(ignore + shift, 0, size)
    ign = ign[(ign[:, 2] > ign[:, 0]) & (ign[:, 3] > ign[:, 1])]
    crop = np.ascontiguousarray(img[y0 : y0 + size, x0 : x0 + size])
    return crop, b[keep], np.concatenate([ign, cut]).astype(np.float32).reshape(-1, 4)


def ignore_raster(regions: np.ndarray, size: int) -> np.ndarray:
    """uint8 ``[size, size]``: 1 on every pixel an ignore region touches."""
    mask = np.zeros((size, size), np.uint8)
    for x1, y1, x2, y2 in regions:
        mask[math.floor(y1) : math.ceil(y2), math.floor(x1) : math.ceil(x2)] = 1
    return mask


def negative_mask(raster: np.ndarray, stride: int) -> np.ndarray:
    """float32 ``[1, g, g]``: 0 for output cells any ignored pixel falls in, else 1."""
    g = raster.shape[0] // stride
    touched = raster[: g * stride, : g * stride].reshape(g, stride, g, stride).max(axis=(1, 3))
    return (1 - touched).astype(np.float32)[None]


class AnnotatedCrops(Dataset):
    """Random crops of annotated images; sample ``i`` is fully determined by ``(seed, i)``.

    A dataset is drawn with probability proportional to its weight, then one of its images
    uniformly; the image is resized by its scale times ``U(augment.scale)``.
    """

    def __init__(
        self,
        datasets: list[list[SourceImage]],
        weights: Sequence[float],
        num_classes: int,
        crop: int,
        seed: int,
        augment: AugmentSection,
        mean: np.ndarray,
        std: np.ndarray,
        stride: int,
    ) -> None:
        pairs = [(d, w) for d, w in zip(datasets, weights) if d]
        if not pairs:
            raise ConfigError("data.train: no training images left")
        self.datasets = [d for d, _ in pairs]
        p = np.array([w for _, w in pairs], np.float64)
        self.p = p / p.sum()
        self.num_classes, self.crop, self.seed, self.stride = num_classes, crop, seed, stride
        self.scale_range = augment.scale
        self.mean, self.std = mean, std
        self._aug = build_augment(augment)

    def __len__(self) -> int:
        return 2**62

    def compose(self, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The augmented uint8 RGB crop ``[S, S, 3]``, its boxes ``[N, 5]``, the ignore raster
        uint8 ``[S, S]`` and the image's ``neg_weight [K]``."""
        rng = np.random.default_rng([self.seed, index])
        images = self.datasets[int(rng.choice(len(self.datasets), p=self.p))]
        src = images[int(rng.integers(len(images)))]
        s = src.scale * rng.uniform(*self.scale_range)
        img = load_image(src.path)
        h, w = img.shape[:2]
        size = (max(1, round(w * s)), max(1, round(h * s)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
        fx, fy = size[0] / w, size[1] / h
        boxes = src.boxes * np.array([fx, fy, fx, fy, 1], np.float32)
        ignore = src.ignore * np.array([fx, fy, fx, fy], np.float32)
        img, boxes, ignore = crop_with_ignore(img, boxes, ignore, self.crop, rng)
        keep = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        boxes = boxes[keep]
        raster = ignore_raster(ignore, self.crop)
        aug_seed = int(rng.integers(2**31))
        if self._aug is None:
            return img, boxes, raster, src.neg_weight
        self._aug.set_random_seed(aug_seed)
        r = self._aug(
            image=img, mask=raster, bboxes=boxes[:, :4], labels=boxes[:, 4].astype(np.int64)
        )
        out = np.zeros((len(r["bboxes"]), 5), np.float32)
        if len(out):
            out[:, :4], out[:, 4] = r["bboxes"], r["labels"]
        return r["image"], out, np.asarray(r["mask"], np.uint8), src.neg_weight

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        img, boxes, raster, neg = self.compose(index)
        t = make_targets(boxes, self.crop, self.num_classes, self.stride)
        x = ((img.astype(np.float32) - self.mean) / self.std).transpose(2, 0, 1)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(x)),
            "neg_weight": torch.from_numpy(neg.copy()),
            "neg_mask": torch.from_numpy(negative_mask(raster, self.stride)),
            **{k: torch.from_numpy(v) for k, v in t.items()},
        }


# --------------------------------------------------------------------------- selection
@dataclass
class TrainData:
    """What the trainer trains and validates on. ``dataset[i]`` is sample ``i`` (a dict of
    tensors, see the module docstring); ``val`` may be empty (no validation)."""

    dataset: Dataset
    val: list[ValImage]
    summary: str


def _val_images(
    images: Sequence[SourceImage], cfg: TrainConfig, mean: np.ndarray, std: np.ndarray
) -> list[ValImage]:
    out = []
    for src in images:
        img = load_image(src.path)
        h, w = img.shape[:2]
        size = (max(1, round(w * src.scale)), max(1, round(h * src.scale)))
        img = cv2.resize(
            img, size, interpolation=cv2.INTER_AREA if src.scale < 1 else cv2.INTER_LINEAR
        )
        f = np.array([size[0] / w, size[1] / h] * 2, np.float32)
        out.append(to_val_image(img, src.boxes[:, :4] * f, src.boxes[:, 4].astype(np.int64), mean, std,
                                ignore=src.ignore * f,
                                unsupervised=frozenset(np.flatnonzero(src.neg_weight == 0).tolist())))  # fmt: skip
    return out


def build_data(cfg: TrainConfig, stride: int) -> TrainData:
    """The training samples and validation images that ``cfg.data`` describes."""
    d, frac = cfg.data, cfg.run.fraction
    n_val = max(1, round(d.val_images * frac)) if d.val_images else 0
    if d.source == "composed":
        if stride != 8:
            raise ConfigError(
                f"model.architecture: the composed recipe needs stride 8, not {stride}"
            )
        assert d.data_root is not None
        ds = ComposedCrops(d.data_root, crop=d.crop, seed=cfg.run.seed, recipe=d.composer)
        val = composed_val_set(d.data_root, n_val, cfg.model.rbc_diameter_px)
        n_composed = max(1, round(d.val_composed * frac)) if d.val_composed else 0
        val += composed_dev_images(d.data_root, n_composed)
        summary = (f"composed crops: {len(ds.txl)} TXL + {len(ds.marrow)} marrow fields; "
                   f"{len(val) - n_composed} TXL dev + {n_composed} composed dev val fields")  # fmt: skip
        return TrainData(ds, val, summary)

    classes, rbc = cfg.model.classes, cfg.model.rbc_diameter_px
    mean = np.array(cfg.model.mean, np.float32) * 255
    std = np.array(cfg.model.std, np.float32) * 255
    train = read_sources(d.train, classes, rbc, "data.train")
    if d.val:
        val_src = [im for images in read_sources(d.val, classes, rbc, "data.val") for im in images]
    else:
        train, val_src = split_val(train, d.val_fraction, d.val_seed)
    train = [subsample(images, frac, d.val_seed) for images in train]
    if frac < 1 and val_src:
        val_src = val_src[: max(1, math.ceil(frac * len(val_src)))]
    weights = [float(e.get("weight", len(images))) for e, images in zip(d.train, train)]
    ds = AnnotatedCrops(
        train, weights, len(classes), d.crop, cfg.run.seed, d.augment, mean, std, stride
    )
    val = _val_images(val_src, cfg, mean, std)
    n_train = sum(len(images) for images in train)
    summary = f"annotated crops: {n_train} images in {len(train)} dataset(s); {len(val)} val images"
    return TrainData(ds, val, summary)
