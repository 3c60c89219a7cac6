"""Real parts of composed crops: the Giemsa macrophages as hosts, and a bank of real cells.

Hosts are :class:`hemoscan.synthetic.hosts.Host` patches (float RGB, soft alpha, silhouette and
nucleus masks); cells are crops of TXL-PBC boxes, scaled to the field's red-cell size with a
soft elliptical alpha.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import cv2
import numpy as np

from hemoscan.synthetic.hosts import Host
from hemoscan.synthetic.primitives import soft_ellipse

from .images import load_rgb
from .splits import HELDOUT_HOST, C, TxlImage


def real_host_aug() -> A.Compose:
    return A.Compose([
        A.Affine(rotate=(-180, 180), fit_output=True, border_mode=cv2.BORDER_CONSTANT, p=1.0),
        A.HorizontalFlip(), A.VerticalFlip(),
        A.HueSaturationValue(12, 20, 12, p=0.9),
        A.RandomBrightnessContrast(0.12, 0.15, p=0.8),
        A.OneOf([A.ElasticTransform(alpha=30, sigma=8), A.GridDistortion(num_steps=5, distort_limit=0.3)], p=0.7),
    ])  # fmt: skip


def load_real_hosts(
    root: Path, part: str = "train", max_side: int = 360
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The Giemsa macrophages of ``part`` (``train``: all but HELDOUT_HOST, ``heldout``: it),
    cropped to their mask box (+margin) and downscaled: (rgb, mask u8)."""
    out = []
    for path in sorted((root / "images").glob("*.png")):
        if (path.name == HELDOUT_HOST) != (part == "heldout"):
            continue
        img = load_rgb(path)
        m = cv2.imread(str(root / "masks" / path.name), cv2.IMREAD_UNCHANGED)
        n, lab, stats, _ = cv2.connectedComponentsWithStats(
            (m[..., 2] > 0).astype(np.uint8)
        )  # BGRA
        mask = (lab == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
        ys, xs = np.nonzero(mask)
        pad = 16
        y0, y1 = max(0, ys.min() - pad), min(mask.shape[0], ys.max() + pad)
        x0, x1 = max(0, xs.min() - pad), min(mask.shape[1], xs.max() + pad)
        img, mask = img[y0:y1, x0:x1], mask[y0:y1, x0:x1]
        s = max_side / max(img.shape[:2])
        size = (round(img.shape[1] * s), round(img.shape[0] * s))
        out.append(
            (
                cv2.resize(img, size, interpolation=cv2.INTER_AREA),
                cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST),
            )
        )
    return out


def real_host(
    rng: np.random.Generator, diameter: float, source: tuple[np.ndarray, np.ndarray], aug: A.Compose
) -> Host:
    aug.set_random_seed(int(rng.integers(2**31)))
    r = aug(image=source[0], mask=source[1])
    img, mask = r["image"], r["mask"]
    ys, xs = np.nonzero(mask)
    img, mask = (
        img[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1],
        mask[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1],
    )
    s = diameter / max(img.shape[:2])
    size = (max(2, round(img.shape[1] * s)), max(2, round(img.shape[0] * s)))
    img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    pad = 6
    img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REFLECT)
    mask = cv2.copyMakeBorder(mask, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0) > 0
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), rng.uniform(0.8, 1.8))
    gray = img.mean(2)
    nucleus = mask & (gray < np.percentile(gray[mask], 30))
    nucleus = cv2.dilate(nucleus.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    return Host(img.astype(np.float32), alpha, mask, nucleus)


@dataclass(frozen=True)
class CellCrop:
    rgb: np.ndarray  # uint8 crop of the cell's box
    cls: int  # free-cell class index
    diameter: float  # (w + h) / 2 in the crop's pixels


def build_cell_bank(
    items: list[TxlImage], rng: np.random.Generator, n_images: int = 150
) -> list[CellCrop]:
    """Real RBC / WBC / platelet crops from TXL-PBC train boxes (all boxes of ``n_images``)."""
    bank = []
    for k in rng.choice(len(items), size=min(n_images, len(items)), replace=False):
        item = items[int(k)]
        img = load_rgb(item.path)
        h, w = img.shape[:2]
        for x1, y1, x2, y2, c in item.boxes:
            x1, y1, x2, y2 = int(max(0, x1)), int(max(0, y1)), int(min(w, x2)), int(min(h, y2))
            if x2 - x1 >= 4 and y2 - y1 >= 4 and 0.6 < (x2 - x1) / (y2 - y1) < 1.6:
                bank.append(CellCrop(img[y1:y2, x1:x2].copy(), int(c), (x2 - x1 + y2 - y1) / 2))
    return bank


#: Diameters the composer draws cells at (engulfed, clumped, on a host's edge), in red-cell
#: diameters of the field.
COMPOSED_CELL_SIZES = {
    C["rbc"]: (0.85, 1.1),
    C["nucleated"]: (1.2, 1.6),
    C["platelet"]: (0.25, 0.35),
}
#: Diameters of free platelets: the 10th to 90th percentile of TXL-PBC train's labelled platelets.
FREE_PLATELET_SIZE = (0.34, 0.54)


def sized_cell(
    rng: np.random.Generator,
    bank: dict[int, list[CellCrop]],
    cls: int,
    rbc_d: float,
    factor: tuple[float, float] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """A random real cell of ``cls`` scaled to the field (float rgb, soft elliptical alpha),
    ``factor`` red-cell diameters across (default :data:`COMPOSED_CELL_SIZES`)."""
    crop = bank[cls][rng.integers(len(bank[cls]))]
    factor = factor or COMPOSED_CELL_SIZES[cls]
    s = rbc_d * rng.uniform(*factor) / crop.diameter
    rgb = cv2.resize(
        crop.rgb,
        (max(3, round(crop.rgb.shape[1] * s)), max(3, round(crop.rgb.shape[0] * s))),
        interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR,
    )
    rgb = np.rot90(rgb, int(rng.integers(4)))
    if rng.random() < 0.5:
        rgb = rgb[:, ::-1]
    h, w = rgb.shape[:2]
    return np.ascontiguousarray(rgb, np.float32), soft_ellipse(
        h, w, blur=max(0.6, min(h, w) / 30), shrink=0.5
    )
