"""Composed training crops for the default CenterNet detector, generated on the fly.

Each sample is drawn from its own ``np.random.default_rng([seed, index])``, so a run is
reproducible and resumable from the sample index alone. A crop is a rescaled TXL-PBC field
(rbc / platelet / nucleated fully labelled) or a segpc marrow field (plasma cells as
``nucleated`` positives, no rbc/platelet/nucleated negatives), on which 60% of crops get
1-2 pasted hosts (procedural or one of the 3 real Giemsa macrophages). 60% of hosts hold
1-4 real cell crops inside a thin clear halo (hemophagocytes); the rest are macrophages,
half of them with a hard negative (a cell on top without a halo, dark dots, empty vacuoles).
That is v2's recipe; :class:`~hemoscan_training.config.ComposerSection` changes its shares and
adds hosts quilted from real-host texture, lobed hosts, stain jitter of hosts and non-blood
inclusions (parasite-like bodies) in any host.

Everything composed here is synthetic: figures measured on it must say so.
Run ``python -m hemoscan_training.data --dump 4`` to write example crops with boxes to /tmp.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, Sampler

from .config import ComposerSection

CLASSES: tuple[str, ...] = (
    "rbc", "platelet", "nucleated", "macrophage", "hemophagocyte",
    "engulfed_rbc", "engulfed_nucleated", "engulfed_platelet",
)  # fmt: skip
C = {name: i for i, name in enumerate(CLASSES)}
STRIDE = 8
TXL_TO_CLASS = {0: C["nucleated"], 1: C["rbc"], 2: C["platelet"]}
FREE_TO_ENGULFED = {C["rbc"]: C["engulfed_rbc"], C["nucleated"]: C["engulfed_nucleated"],
                    C["platelet"]: C["engulfed_platelet"]}  # fmt: skip
MARROW_UNSUPERVISED = (C["rbc"], C["platelet"], C["nucleated"])
SEGPC_RBC_PX = 32.0  # approximate red-cell diameter in the 512x512 segpc fields (eyeballed)
MAX_PLASMA_CELL_RBC = 4.0  # larger segpc mask components are clusters of touching cells
DEV_EVERY = 17  # every 17th TXL-PBC train field (sorted) is held out for model selection
HELDOUT_MARROW_EVERY = 5  # every 5th segpc field (sorted) is never used in training
HELDOUT_HOST = "L3_M2_C13.png"  # the giemsa macrophage kept for the composed validation set
# lavage slides never trained on (35 macrophages, 132 other leukocytes): the bal-heldout suite
HELDOUT_BAL_SLIDES = ("BAL 1 Spray 2", "BAL Promyk Spray 4")
BAL_MPP = 0.23  # µm per pixel of the bal-macrophages patches (dataset README)
RBC_UM = 7.5  # a red cell's diameter in µm: the scale a model's rbc_diameter_px stands for
BAL_UNSUPERVISED = (C["rbc"], C["platelet"])  # red cells and platelets are not boxed in lavage
UNSUPERVISED = {"txl-pbc": (), "segpc-marrow": MARROW_UNSUPERVISED, "bal-macrophages": BAL_UNSUPERVISED}
MEAN = np.array([0.485, 0.456, 0.406], np.float32) * 255
STD = np.array([0.229, 0.224, 0.225], np.float32) * 255

Boxes = np.ndarray  # float32 [N, 5]: x1, y1, x2, y2, class index


# --------------------------------------------------------------------------- TXL-PBC index
@dataclass(frozen=True)
class TxlImage:
    path: Path
    boxes: Boxes  # in the image's own pixels, classes mapped to CLASSES
    rbc_diameter: float  # median RBC (w + h) / 2, or a fallback


def read_txl_split(root: Path, split: str) -> list[TxlImage]:
    """Every image of a TXL-PBC split with its boxes and median red-cell diameter."""
    rows: list[tuple[Path, Boxes, tuple[int, int]]] = []
    for path in sorted((root / "images" / split).glob("*.jpg")):
        with Image.open(path) as im:
            w, h = im.size
        label = root / "labels" / split / f"{path.stem}.txt"
        raw = (
            np.loadtxt(label, ndmin=2)
            if label.exists() and label.stat().st_size
            else np.zeros((0, 5))
        )
        boxes = np.zeros((len(raw), 5), np.float32)
        if len(raw):
            cx, cy, bw, bh = raw[:, 1] * w, raw[:, 2] * h, raw[:, 3] * w, raw[:, 4] * h
            boxes[:, :4] = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
            boxes[:, 4] = [TXL_TO_CLASS[int(c)] for c in raw[:, 0]]
        rows.append((path, boxes, (w, h)))

    def median_rbc(b: Boxes) -> float | None:
        r = b[b[:, 4] == C["rbc"]]
        return float(np.median((r[:, 2] - r[:, 0] + r[:, 3] - r[:, 1]) / 2)) if len(r) else None

    by_size: dict[tuple[int, int], list[float]] = {}
    for _, b, size in rows:
        if (d := median_rbc(b)) is not None:
            by_size.setdefault(size, []).append(d)
    out = []
    for path, b, size in rows:
        d = median_rbc(b)
        if d is None:
            d = float(np.median(by_size[size])) if size in by_size else 80.0
        out.append(TxlImage(path, b, d))
    return out


def txl_part(root: Path, part: str) -> list[TxlImage]:
    """TXL-PBC fields of ``part``: ``train`` (minus dev), ``dev`` (every 17th train field), ``val``."""
    if part == "val":
        return read_txl_split(root, "val")
    items = read_txl_split(root, "train")
    dev = [i % DEV_EVERY == DEV_EVERY - 1 for i in range(len(items))]
    return [it for it, d in zip(items, dev) if d == (part == "dev")]


def marrow_part(root: Path, part: str) -> list[Path]:
    """segpc fields of ``part``: ``train`` or ``heldout`` (every 5th field, never trained on)."""
    paths = sorted((root / "images").glob("*"))
    held = [i % HELDOUT_MARROW_EVERY == HELDOUT_MARROW_EVERY - 1 for i in range(len(paths))]
    return [p for p, h in zip(paths, held) if h == (part == "heldout")]


@dataclass(frozen=True)
class BalImage:
    path: Path
    slide: str
    boxes: Boxes  # macrophages as ``macrophage``, every other leukocyte as ``nucleated``


def bal_part(root: Path, part: str) -> list[BalImage]:
    """bal-macrophages patches of ``part``: ``train`` or ``heldout`` (whole slides in
    :data:`HELDOUT_BAL_SLIDES`, never trained on: validation is split by slide, not patch)."""
    import json

    coco = json.loads((root / "annotations.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    out = []
    for im in sorted(coco["images"], key=lambda im: im["file_name"]):
        if (im["slide"] in HELDOUT_BAL_SLIDES) != (part == "heldout"):
            continue
        anns = [a for a in coco["annotations"] if a["image_id"] == im["id"]]
        boxes = np.zeros((len(anns), 5), np.float32)
        for k, a in enumerate(anns):
            x, y, w, h = a["bbox"]
            cls = C["macrophage"] if names[a["category_id"]] == "macrophage" else C["nucleated"]
            boxes[k] = x, y, x + w, y + h, cls
        out.append(BalImage(root / "images" / im["file_name"], im["slide"], boxes))
    return out


def load_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise FileNotFoundError(path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def rescale(img: np.ndarray, boxes: Boxes, s: float) -> tuple[np.ndarray, Boxes]:
    h, w = img.shape[:2]
    size = (max(1, round(w * s)), max(1, round(h * s)))
    img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    boxes = boxes.copy()
    boxes[:, :4] *= s
    return img, boxes


def border_colour(img: np.ndarray) -> tuple[int, int, int]:
    edge = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
    return tuple(int(v) for v in np.median(edge, axis=0))  # type: ignore[return-value]


def random_crop(
    img: np.ndarray, boxes: Boxes, size: int, rng: np.random.Generator, min_visible: float = 0.4
) -> tuple[np.ndarray, Boxes]:
    """A ``size`` square crop (padded with the border colour); boxes clipped, mostly-cut dropped."""
    h, w = img.shape[:2]
    if h < size or w < size:
        ph, pw = max(0, size - h), max(0, size - w)
        top, left = int(rng.integers(0, ph + 1)), int(rng.integers(0, pw + 1))
        img = cv2.copyMakeBorder(
            img, top, ph - top, left, pw - left, cv2.BORDER_CONSTANT, value=border_colour(img)
        )
        boxes = boxes + np.array([left, top, left, top, 0], np.float32)
        h, w = img.shape[:2]
    y0, x0 = int(rng.integers(0, h - size + 1)), int(rng.integers(0, w - size + 1))
    img = img[y0 : y0 + size, x0 : x0 + size]
    b = boxes - np.array([x0, y0, x0, y0, 0], np.float32)
    area = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    b[:, :4] = np.clip(b[:, :4], 0, size)
    visible = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return np.ascontiguousarray(img), b[visible >= min_visible * np.maximum(area, 1e-6)]


# --------------------------------------------------------------------------- compositing
def paste(canvas: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, x0: int, y0: int) -> None:
    """Alpha-blend ``rgb`` (float HxWx3) onto float ``canvas`` at (x0, y0), clipped."""
    H, W = canvas.shape[:2]
    h, w = alpha.shape
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + h)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    a = alpha[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0, None]
    src = rgb[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    canvas[cy0:cy1, cx0:cx1] = canvas[cy0:cy1, cx0:cx1] * (1 - a) + src * a


def soft_ellipse(h: int, w: int, blur: float, shrink: float = 0.0) -> np.ndarray:
    m = np.zeros((h, w), np.float32)
    axes = (max(1, int(w / 2 - shrink)), max(1, int(h / 2 - shrink)))
    cv2.ellipse(m, (w // 2, h // 2), axes, 0, 0, 360, 1.0, -1, cv2.LINE_AA)
    return cv2.GaussianBlur(m, (0, 0), blur) if blur > 0 else m


def smooth_noise(rng: np.random.Generator, h: int, w: int, cell: int) -> np.ndarray:
    small = rng.normal(size=(max(2, h // cell), max(2, w // cell))).astype(np.float32)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)


@dataclass
class Host:
    rgb: np.ndarray  # float32 [S, S, 3]
    alpha: np.ndarray  # float32 [S, S], soft edges
    mask: np.ndarray  # bool [S, S], the silhouette
    nucleus: np.ndarray  # bool [S, S]


def field_colours(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The field's background (bright mode) and darkest stain colours, float RGB."""
    px = img[::4, ::4].reshape(-1, 3).astype(np.float32)
    gray = px.mean(1)
    bg = np.median(px[gray >= np.percentile(gray, 70)], 0)
    dark = np.median(px[gray <= np.percentile(gray, 3)], 0)
    return bg, dark


def _outline(rng: np.random.Generator, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """An irregular oval polygon around (cx, cy) with semi-axes about (rx, ry), int32 [N, 2]."""
    n = int(rng.integers(10, 20))
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    jitter = np.convolve(np.tile(rng.normal(0, 0.09, n), 3), np.ones(3) / 3, "same")[n : 2 * n]
    rot = rng.uniform(0, np.pi)
    px, py = rx * np.cos(ang) * (1 + jitter), ry * np.sin(ang) * (1 + jitter)
    pts = np.stack(
        [cx + px * np.cos(rot) - py * np.sin(rot), cy + px * np.sin(rot) + py * np.cos(rot)], 1
    )
    return np.round(pts).astype(np.int32)


def silhouette(
    rng: np.random.Generator, diameter: float, S: int, lobes: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """A host outline in an ``S`` square: (bool mask, float32 soft alpha). One irregular oval
    of ``diameter``, or ``lobes`` overlapping smaller ovals along an axis (a ragged host)."""
    c = S / 2
    if lobes == 1:
        rx, ry = diameter / 2, diameter / 2 * rng.uniform(0.65, 1.0)
        polys = [_outline(rng, c, c, rx, ry)]
    else:
        axis = rng.uniform(0, np.pi)
        polys = []
        for t in np.linspace(-1, 1, lobes) * diameter * rng.uniform(0.15, 0.25):
            r = diameter * rng.uniform(0.25, 0.33)
            polys.append(
                _outline(rng, c + t * np.cos(axis), c + t * np.sin(axis), r, r * rng.uniform(0.65, 1.0))
            )
    m = np.zeros((S, S), np.float32)
    for pts in polys:
        cv2.fillPoly(m, [pts], 1.0, cv2.LINE_AA)
    mask = cv2.GaussianBlur(m, (0, 0), diameter * 0.06) > 0.5
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), rng.uniform(1.0, 2.5))
    return mask, alpha


def _paint_nucleus(
    rng: np.random.Generator, rgb: np.ndarray, mask: np.ndarray, diameter: float, dark: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A large eccentric oval nucleus kept inside ``mask``: (float rgb, bool nucleus)."""
    S = mask.shape[0]
    c = S / 2
    a_ax, b_ax = diameter * rng.uniform(0.17, 0.27), diameter * rng.uniform(0.12, 0.2)
    d_ang, ecc = rng.uniform(0, 2 * np.pi), rng.uniform(0.12, 0.28) * diameter
    ncx, ncy = c + ecc * np.cos(d_ang), c + ecc * np.sin(d_ang)
    nm = np.zeros((S, S), np.float32)
    cv2.ellipse(nm, (int(ncx), int(ncy)), (int(a_ax), int(b_ax)), float(rng.uniform(0, 180)),
                0, 360, 1.0, -1, cv2.LINE_AA)  # fmt: skip
    nm *= cv2.erode(mask.astype(np.float32), np.ones((7, 7), np.uint8))
    n_col = dark * 0.5 + np.array([115, 65, 150], np.float32) * 0.5
    n_rgb = n_col + smooth_noise(rng, S, S, 3)[..., None] * rng.uniform(8, 18)
    na = cv2.GaussianBlur(nm, (0, 0), 1.2) * rng.uniform(0.85, 1.0)
    return rgb * (1 - na[..., None]) + n_rgb * na[..., None], nm > 0.5


def procedural_host(
    rng: np.random.Generator, diameter: float, bg: np.ndarray, dark: np.ndarray, lobes: int = 1
) -> Host:
    """Irregular oval (or ``lobes`` lobes), pale foamy cytoplasm with vacuoles, large eccentric
    oval nucleus."""
    S = int(diameter * 1.25) + 12
    mask, alpha = silhouette(rng, diameter, S, lobes)
    base = np.array(
        [(170, 180, 210), (195, 175, 212), (185, 185, 200)][rng.integers(3)], np.float32
    )
    cyto = (bg * (1 - (t := rng.uniform(0.35, 0.7))) + base * t) * rng.uniform(0.82, 0.96)
    rgb = np.broadcast_to(cyto, (S, S, 3)).copy()
    rgb += smooth_noise(rng, S, S, max(4, int(diameter / 10)))[..., None] * rng.uniform(5, 12)
    rgb += rng.normal(0, rng.uniform(2, 5), (S, S, 1)).astype(np.float32)
    ys, xs = np.nonzero(cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)))
    for _ in range(int(rng.integers(4, 25))):  # foamy vacuoles
        if not len(xs):
            break
        k = rng.integers(len(xs))
        r = rng.uniform(1.5, max(2.0, diameter * 0.045))
        cv2.circle(
            rgb,
            (int(xs[k]), int(ys[k])),
            int(round(r)),
            tuple(float(v) for v in np.minimum(bg + 12, 255)),
            -1,
            cv2.LINE_AA,
        )
    rgb, nucleus = _paint_nucleus(rng, rgb, mask, diameter, dark)
    return Host(np.clip(rgb, 0, 255), alpha, mask, nucleus)


def stain_jitter(rng: np.random.Generator, rgb: np.ndarray, hue: float) -> np.ndarray:
    """``rgb`` (float, 0-255) with its hue shifted by ``-hue / 3 .. hue`` (OpenCV units: +20
    turns Giemsa blue-violet to magenta, the way Romanowsky stains vary, while a large negative
    shift would turn it an unreal cyan), saturation x0.75-1.3 and value x0.85-1.1."""
    hsv = cv2.cvtColor(np.clip(rgb, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-hue / 3, hue)) % 180
    hsv[..., 1] *= rng.uniform(0.75, 1.3)
    hsv[..., 2] *= rng.uniform(0.85, 1.1)
    hsv = np.clip(hsv, 0, [179, 255, 255]).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32)


def texture_host(
    rng: np.random.Generator,
    diameter: float,
    source: tuple[np.ndarray, np.ndarray],
    dark: np.ndarray,
    lobes: int = 1,
    hue: float = 0.0,
) -> Host | None:
    """A synthetic host whose cytoplasm is quilted from a real host's (``source``: rgb, mask),
    inclusions and all, on a new silhouette, with a painted nucleus; ``None`` when the source
    has no patch of clear cytoplasm at this scale."""
    S = int(diameter * 1.25) + 12
    mask, alpha = silhouette(rng, diameter, S, lobes)
    img, m = source
    ys, xs = np.nonzero(m)
    s = diameter * rng.uniform(0.8, 1.3) / (max(np.ptp(ys), np.ptp(xs)) + 1)
    size = (max(2, round(img.shape[1] * s)), max(2, round(img.shape[0] * s)))
    img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    m = cv2.resize(m, size, interpolation=cv2.INTER_NEAREST) > 0
    gray = img.mean(2)
    dark_core = (m & (gray < np.percentile(gray[m], 30))).astype(np.uint8)
    nucleus = cv2.dilate(dark_core, np.ones((5, 5), np.uint8))
    patch = max(8, int(diameter * rng.uniform(0.2, 0.35)))
    valid = cv2.erode((m & (nucleus == 0)).astype(np.uint8), np.ones((patch, patch), np.uint8),
                      borderType=cv2.BORDER_CONSTANT, borderValue=0)
    cy, cx = np.nonzero(valid)
    if not len(cx):
        return None
    acc = np.zeros((S + patch, S + patch, 3), np.float32)
    weight = np.full((S + patch, S + patch, 1), 1e-6, np.float32)
    window = np.outer(np.hanning(patch + 2)[1:-1], np.hanning(patch + 2)[1:-1])[..., None]
    half = patch // 2
    for y in range(0, S, max(1, patch * 2 // 3)):
        for x in range(0, S, max(1, patch * 2 // 3)):
            k = rng.integers(len(cx))
            p = img[cy[k] - half : cy[k] - half + patch, cx[k] - half : cx[k] - half + patch]
            p = np.rot90(p, int(rng.integers(4)))
            if rng.random() < 0.5:
                p = p[:, ::-1]
            acc[y : y + patch, x : x + patch] += p * window
            weight[y : y + patch, x : x + patch] += window
    rgb = (acc / weight)[half : half + S, half : half + S]
    if hue:
        rgb = stain_jitter(rng, rgb, hue)
    rgb, nuc = _paint_nucleus(rng, rgb, mask, diameter, dark)
    return Host(np.clip(rgb, 0, 255), alpha, mask, nuc)


def _real_host_aug() -> A.Compose:
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


def sized_cell(
    rng: np.random.Generator, bank: dict[int, list[CellCrop]], cls: int, rbc_d: float
) -> tuple[np.ndarray, np.ndarray]:
    """A random real cell of ``cls`` scaled to the field (float rgb, soft elliptical alpha)."""
    crop = bank[cls][rng.integers(len(bank[cls]))]
    factor = {C["rbc"]: (0.85, 1.1), C["nucleated"]: (1.2, 1.6), C["platelet"]: (0.25, 0.35)}[cls]
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


class Composer:
    """Pastes hosts (macrophages / hemophagocytes) and their contents onto a crop, as
    ``recipe`` says (default: v2's recipe)."""

    def __init__(
        self,
        real_hosts: list[tuple[np.ndarray, np.ndarray]],
        bank: list[CellCrop],
        recipe: ComposerSection = ComposerSection(),
    ) -> None:
        self.real_hosts = real_hosts
        self.recipe = recipe
        self.bank = {
            c: [b for b in bank if b.cls == c] for c in (C["rbc"], C["nucleated"], C["platelet"])
        }
        self.aug = _real_host_aug()

    def __call__(
        self, rng: np.random.Generator, img: np.ndarray, boxes: Boxes, rbc_d: float
    ) -> tuple[np.ndarray, Boxes]:
        canvas = img.astype(np.float32)
        bg, dark = field_colours(img)
        occupied = np.zeros(img.shape[:2], bool)
        new: list[list[float]] = []
        for _ in range(int(rng.integers(1, 3))):
            host = self._host(rng, rbc_d * rng.uniform(3, 6), bg, dark)
            placed = self._place(rng, host, occupied)
            if placed is None:
                continue
            x0, y0 = placed
            paste(canvas, host.rgb, host.alpha, x0, y0)
            full = np.zeros_like(occupied)
            _blit(full, host.mask, x0, y0)
            occupied |= full
            # cells whose centre the host covers are gone
            cx = ((boxes[:, 0] + boxes[:, 2]) / 2).astype(int).clip(0, img.shape[1] - 1)
            cy = ((boxes[:, 1] + boxes[:, 3]) / 2).astype(int).clip(0, img.shape[0] - 1)
            boxes = boxes[~full[cy, cx]]
            ys, xs = np.nonzero(host.mask)
            hbox = [x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1]
            label = C["macrophage"]
            r = self.recipe
            if r.p_inclusions and rng.random() < r.p_inclusions:
                self._inclusions(rng, canvas, host, x0, y0, rbc_d, bg, dark)
            if rng.random() < r.p_engulf:
                inside = self._engulf(rng, canvas, host, x0, y0, rbc_d, bg)
                if inside:
                    label = C["hemophagocyte"]
                    new.extend(inside)
            elif rng.random() < r.p_hard_negative:
                new.extend(self._hard_negative(rng, canvas, host, x0, y0, rbc_d, bg, dark))
            new.append([*hbox, label])
        if rng.random() < 0.3:
            new.extend(self._clump(rng, canvas, occupied, rbc_d))
        boxes = np.concatenate([boxes, np.asarray(new, np.float32).reshape(-1, 5)])
        h, w = img.shape[:2]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        return np.clip(canvas, 0, 255).astype(np.uint8), boxes

    def engulf_in_real_hosts(
        self, rng: np.random.Generator, img: np.ndarray, boxes: Boxes, rbc_d: float, p: float
    ) -> tuple[np.ndarray, Boxes]:
        """Each real ``macrophage`` box of ``boxes`` becomes, with probability ``p``, a
        hemophagocyte: 1-4 real cells in halos placed inside the ellipse its box inscribes,
        away from its darkest third (the nucleus). Returns the new crop and boxes."""
        canvas = img.astype(np.float32)
        bg, _ = field_colours(img)
        boxes = boxes.copy()
        new: list[list[float]] = []
        H, W = img.shape[:2]
        for k in np.flatnonzero(boxes[:, 4] == C["macrophage"]):
            if rng.random() >= p:
                continue
            x1, y1 = int(max(0, boxes[k, 0])), int(max(0, boxes[k, 1]))
            x2, y2 = int(min(W, boxes[k, 2])), int(min(H, boxes[k, 3]))
            if min(x2 - x1, y2 - y1) < 1.5 * rbc_d:
                continue  # too small (or cut by the crop) to hold a cell in a halo
            mask = soft_ellipse(y2 - y1, x2 - x1, blur=0, shrink=0.08 * min(x2 - x1, y2 - y1)) > 0.5
            gray = img[y1:y2, x1:x2].mean(2)
            nucleus = mask & (gray < np.percentile(gray[mask], 33))
            host = Host(canvas[y1:y2, x1:x2].copy(), mask.astype(np.float32), mask, nucleus)
            inside = self._engulf(rng, canvas, host, x1, y1, rbc_d, bg)
            if inside:
                boxes[k, 4] = C["hemophagocyte"]
                new.extend(inside)
        boxes = np.concatenate([boxes, np.asarray(new, np.float32).reshape(-1, 5)])
        return np.clip(canvas, 0, 255).astype(np.uint8), boxes

    def _host(self, rng: np.random.Generator, d: float, bg: np.ndarray, dark: np.ndarray) -> Host:
        """A host of diameter ``d``: real, quilted from real texture, or procedural."""
        r = self.recipe
        if rng.random() < 1 - r.p_real_host or not self.real_hosts:
            lobes = int(rng.integers(2, 4)) if r.p_lobed and rng.random() < r.p_lobed else 1
            if r.p_texture_host and self.real_hosts and rng.random() < r.p_texture_host:
                source = self.real_hosts[rng.integers(len(self.real_hosts))]
                host = texture_host(rng, d, source, dark, lobes, r.host_hue)
                if host is not None:
                    return host
            return procedural_host(rng, d, bg, dark, lobes)
        host = real_host(rng, d, self.real_hosts[rng.integers(len(self.real_hosts))], self.aug)
        if r.host_hue:
            host.rgb = stain_jitter(rng, host.rgb, r.host_hue)
        return host

    @staticmethod
    def _place(
        rng: np.random.Generator, host: Host, occupied: np.ndarray
    ) -> tuple[int, int] | None:
        H, W = occupied.shape
        S = host.mask.shape[0]
        for _ in range(10):
            x0 = int(rng.integers(min(0, W - S), max(0, W - S) + 1))
            y0 = int(rng.integers(min(0, H - S), max(0, H - S) + 1))
            region = np.zeros_like(occupied)
            _blit(region, host.mask, x0, y0)
            if not (region & occupied).any():
                return x0, y0
        return None

    def _engulf(
        self,
        rng: np.random.Generator,
        canvas: np.ndarray,
        host: Host,
        x0: int,
        y0: int,
        rbc_d: float,
        bg: np.ndarray,
    ) -> list[list[float]]:
        """1-4 real cells inside the cytoplasm, each in a thin clear halo; their boxes."""
        halo_col = np.clip(
            np.maximum(bg, 0) * 0.3 + np.array([250, 236, 242], np.float32) * 0.7, 0, 255
        )
        nucleus = cv2.dilate(host.nucleus.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        placed: list[tuple[float, float, float]] = []
        out = []
        for _ in range(int(rng.integers(1, 5))):
            cls = int(rng.choice([C["rbc"], C["nucleated"], C["platelet"]], p=[0.6, 0.25, 0.15]))
            rgb, alpha = sized_cell(rng, self.bank, cls, rbc_d)
            h, w = alpha.shape
            margin = rng.uniform(1.5, 3.0)
            r = max(h, w) / 2 + margin + 1
            k = int(2 * r) | 1
            room = (
                cv2.erode(
                    host.mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
                )
                > 0
            )
            ys, xs = np.nonzero(room & ~nucleus)
            if not len(xs):
                ys, xs = np.nonzero(room)
            ok = [
                (x, y)
                for x, y in zip(xs[::3], ys[::3])
                if all((x - px) ** 2 + (y - py) ** 2 > (r + pr) ** 2 for px, py, pr in placed)
            ]
            if not ok:
                continue
            cx, cy = ok[rng.integers(len(ok))]
            placed.append((cx, cy, r))
            hh, hw = int(round(h + 2 * margin)), int(round(w + 2 * margin))
            halo = soft_ellipse(hh, hw, blur=0.8) * rng.uniform(0.75, 0.95)
            halo_rgb = np.broadcast_to(
                halo_col + rng.normal(0, 3, 3).astype(np.float32), (hh, hw, 3)
            )
            paste(canvas, halo_rgb, halo, x0 + cx - hw // 2, y0 + cy - hh // 2)
            paste(canvas, rgb, alpha, x0 + cx - w // 2, y0 + cy - h // 2)
            bx, by = x0 + cx - w // 2, y0 + cy - h // 2
            out.append([bx, by, bx + w, by + h, FREE_TO_ENGULFED[cls]])
        return out

    def _clump(
        self, rng: np.random.Generator, canvas: np.ndarray, occupied: np.ndarray, rbc_d: float
    ) -> list[list[float]]:
        """3-7 real cells piled on one another, no host and no halo: a crowded clump, which is
        not a hemophagocyte. Each cell keeps its free label."""
        H, W = occupied.shape
        cx, cy = rng.uniform(0.15, 0.85) * W, rng.uniform(0.15, 0.85) * H
        if occupied[int(cy), int(cx)]:
            return []
        out = []
        for _ in range(int(rng.integers(3, 8))):
            cls = int(rng.choice([C["rbc"], C["nucleated"]], p=[0.6, 0.4]))
            rgb, alpha = sized_cell(rng, self.bank, cls, rbc_d)
            h, w = alpha.shape
            bx = int(round(cx + rng.normal(0, rbc_d * 0.45) - w / 2))
            by = int(round(cy + rng.normal(0, rbc_d * 0.45) - h / 2))
            paste(canvas, rgb, np.minimum(alpha * 1.05, 1.0), bx, by)
            out.append([bx, by, bx + w, by + h, cls])
        return out

    def _hard_negative(
        self,
        rng: np.random.Generator,
        canvas: np.ndarray,
        host: Host,
        x0: int,
        y0: int,
        rbc_d: float,
        bg: np.ndarray,
        dark: np.ndarray,
    ) -> list[list[float]]:
        """A cell lying on the host's edge (no halo, keeps its free label), or dots / vacuoles."""
        kind = rng.random()
        if kind < 0.5:
            cls = C["rbc"] if rng.random() < 0.6 else C["nucleated"]
            rgb, alpha = sized_cell(rng, self.bank, cls, rbc_d)
            contours, _ = cv2.findContours(
                host.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
            )
            edge = max(contours, key=len)[:, 0]
            ex, ey = edge[rng.integers(len(edge))]
            h, w = alpha.shape
            bx, by = int(x0 + ex - w // 2), int(y0 + ey - h // 2)
            paste(canvas, rgb, np.minimum(alpha * 1.05, 1.0), bx, by)
            return [[bx, by, bx + w, by + h, cls]]
        ys, xs = _cytoplasm_points(host)
        if not len(xs):
            return []
        if kind < 0.75:
            _dots(rng, canvas, xs + x0, ys + y0, rbc_d, dark)
        else:
            _vacuoles(rng, canvas, xs + x0, ys + y0, rbc_d, bg)
        return []

    @staticmethod
    def _inclusions(
        rng: np.random.Generator,
        canvas: np.ndarray,
        host: Host,
        x0: int,
        y0: int,
        rbc_d: float,
        bg: np.ndarray,
        dark: np.ndarray,
    ) -> None:
        """Non-blood inclusions in the cytoplasm, unlabelled: parasite-like bodies (amastigote
        sized, platelet-like, without a halo), dark dots or empty vacuoles."""
        ys, xs = _cytoplasm_points(host)
        if not len(xs):
            return
        kind = rng.random()
        if kind < 0.5:
            _parasites(rng, canvas, xs + x0, ys + y0, rbc_d, dark)
        elif kind < 0.75:
            _dots(rng, canvas, xs + x0, ys + y0, rbc_d, dark)
        else:
            _vacuoles(rng, canvas, xs + x0, ys + y0, rbc_d, bg)


def _cytoplasm_points(host: Host) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) of the host's cytoplasm away from its edge and nucleus, host pixels."""
    inner = cv2.erode(host.mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    return np.nonzero(inner & ~host.nucleus)


def _dots(rng: np.random.Generator, canvas: np.ndarray, xs: np.ndarray, ys: np.ndarray,
          rbc_d: float, dark: np.ndarray) -> None:  # fmt: skip
    """6-29 small dark dots clustered around one of the points (xs, ys)."""
    col = tuple(float(v) for v in dark * 0.6 + np.array([90, 40, 120]) * 0.4)
    k = rng.integers(len(xs))
    for _ in range(int(rng.integers(6, 30))):
        px = int(xs[k] + rng.normal(0, rbc_d * 0.6))
        py = int(ys[k] + rng.normal(0, rbc_d * 0.6))
        radius = max(1, int(round(rng.uniform(1.0, 2.2) * rbc_d / 40)))
        cv2.circle(canvas, (px, py), radius, col, -1, cv2.LINE_AA)


def _vacuoles(rng: np.random.Generator, canvas: np.ndarray, xs: np.ndarray, ys: np.ndarray,
              rbc_d: float, bg: np.ndarray) -> None:  # fmt: skip
    """2-5 empty clear vacuoles centred on points (xs, ys)."""
    col = tuple(float(v) for v in np.clip(bg * 0.3 + np.array([250, 238, 242]) * 0.7, 0, 255))
    for _ in range(int(rng.integers(2, 6))):
        k = rng.integers(len(xs))
        radius = max(2, int(rbc_d * rng.uniform(0.1, 0.25)))
        cv2.circle(canvas, (int(xs[k]), int(ys[k])), radius, col, -1, cv2.LINE_AA)


def _parasites(rng: np.random.Generator, canvas: np.ndarray, xs: np.ndarray, ys: np.ndarray,
               rbc_d: float, dark: np.ndarray) -> None:  # fmt: skip
    """3-20 oval bodies the size of amastigotes (2-4 µm, a fifth to a third of a red cell),
    pale violet with a dark nucleus, clustered around one of the points (xs, ys)."""
    body = dark * 0.3 + np.array([165, 120, 200], np.float32) * 0.7
    core = dark * 0.7 + np.array([90, 30, 110], np.float32) * 0.3
    k = rng.integers(len(xs))
    spread = rbc_d * rng.uniform(0.4, 1.0)
    for _ in range(int(rng.integers(3, 21))):
        px, py = xs[k] + rng.normal(0, spread), ys[k] + rng.normal(0, spread)
        a = rbc_d * rng.uniform(0.1, 0.17)
        b = a * rng.uniform(0.55, 0.9)
        angle = float(rng.uniform(0, 180))
        jitter = rng.normal(0, 8, 3)
        cv2.ellipse(canvas, (int(px), int(py)), (max(1, int(a)), max(1, int(b))), angle, 0, 360,
                    tuple(float(v) for v in np.clip(body + jitter, 0, 255)), -1, cv2.LINE_AA)  # fmt: skip
        nx, ny = px + rng.normal(0, a * 0.25), py + rng.normal(0, a * 0.25)
        cv2.circle(canvas, (int(nx), int(ny)), max(1, int(a * 0.4)),
                   tuple(float(v) for v in core), -1, cv2.LINE_AA)  # fmt: skip


def _blit(dst: np.ndarray, src: np.ndarray, x0: int, y0: int) -> None:
    H, W = dst.shape
    h, w = src.shape
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + h)
    if cx1 > cx0 and cy1 > cy0:
        dst[cy0:cy1, cx0:cx1] |= src[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]


# --------------------------------------------------------------------------- targets
def gaussian_radius(h: float, w: float, min_overlap: float = 0.7) -> float:
    """CenterNet's radius such that a box shifted by it keeps ``min_overlap`` IoU."""
    b1, c1 = h + w, w * h * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * c1)) / 2
    b2, c2 = 2 * (h + w), (1 - min_overlap) * w * h
    r2 = (b2 + math.sqrt(b2**2 - 16 * c2)) / 2
    a3, b3, c3 = 4 * min_overlap, -2 * min_overlap * (h + w), (min_overlap - 1) * w * h
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def make_targets(
    boxes: Boxes, size: int, num_classes: int = len(CLASSES), stride: int = STRIDE
) -> dict[str, np.ndarray]:
    """CenterNet targets at ``stride`` (default 8) for a ``size`` square crop: heatmap [K,h,w],
    size/offset [2,h,w], reg_mask [1,h,w], float32, ``h = w = size // stride``."""
    g = size // stride
    heat = np.zeros((num_classes, g, g), np.float32)
    wh = np.zeros((2, g, g), np.float32)
    off = np.zeros((2, g, g), np.float32)
    mask = np.zeros((1, g, g), np.float32)
    yy, xx = np.mgrid[0:g, 0:g].astype(np.float32)
    # largest first so small objects win a shared centre cell for size/offset
    for x1, y1, x2, y2, c in sorted(boxes.tolist(), key=lambda b: -(b[2] - b[0]) * (b[3] - b[1])):
        w, h = (x2 - x1) / stride, (y2 - y1) / stride
        if w < 0.25 or h < 0.25:
            continue
        cx, cy = (x1 + x2) / 2 / stride, (y1 + y2) / 2 / stride
        ix, iy = min(int(cx), g - 1), min(int(cy), g - 1)
        sigma = max((2 * max(0.0, gaussian_radius(h, w)) + 1) / 6, 0.7)
        np.maximum(
            heat[int(c)],
            np.exp(-((xx - ix) ** 2 + (yy - iy) ** 2) / (2 * sigma**2)),
            out=heat[int(c)],
        )
        wh[:, iy, ix] = math.log(w), math.log(h)
        off[:, iy, ix] = cx - ix, cy - iy
        mask[0, iy, ix] = 1.0
    heat[heat < 1e-4] = 0.0
    return {"heatmap": heat, "log_size": wh, "offset": off, "reg_mask": mask}


# --------------------------------------------------------------------------- dataset
def photometric_aug() -> A.Compose:
    return A.Compose([
        A.OneOf([A.HueSaturationValue(12, 20, 15), A.RandomBrightnessContrast(0.15, 0.15),
                 A.RGBShift(12, 12, 12)], p=0.8),
        A.OneOf([A.GaussianBlur(blur_limit=(3, 5)), A.MotionBlur(blur_limit=(3, 7))], p=0.2),
        A.ImageCompression(quality_range=(60, 95), p=0.3),
        A.GaussNoise(std_range=(0.01, 0.04), p=0.2),
        A.HorizontalFlip(), A.VerticalFlip(), A.RandomRotate90(),
    ], bbox_params=A.BboxParams(format="pascal_voc", label_fields=["labels"], min_visibility=0.4))  # fmt: skip


class ComposedCrops(Dataset):
    """Sample ``i`` is fully determined by ``(seed, i)``; resources load lazily per worker."""

    def __init__(
        self,
        data_root: Path,
        crop: int = 384,
        seed: int = 0,
        p_marrow: float = 0.5,
        p_hosts: float = 0.6,
        part: str = "train",
        recipe: ComposerSection = ComposerSection(),
    ) -> None:
        """``part="train"`` composes from the training parts only; ``part="val"`` only from
        parts training never sees: TXL-PBC val fields and cells, held-out segpc fields and
        the held-out Giemsa host (procedural hosts are drawn from other random streams).
        ``recipe`` says how hosts are drawn (see :class:`ComposerSection`)."""
        if part not in ("train", "val"):
            raise ValueError(f"part must be 'train' or 'val', not {part!r}")
        self.root, self.crop, self.seed, self.part = Path(data_root), crop, seed, part
        self.p_marrow, self.p_hosts, self.recipe = p_marrow, p_hosts, recipe
        self.txl = txl_part(self.root / "txl-pbc", part)
        self.marrow = marrow_part(self.root / "segpc-marrow", "train" if part == "train" else "heldout")
        self.bal = (
            bal_part(self.root / "bal-macrophages", "train" if part == "train" else "heldout")
            if recipe.p_bal
            else []
        )
        self._composer: Composer | None = None
        self._aug = photometric_aug()

    def __len__(self) -> int:
        return 2**62

    @property
    def composer(self) -> Composer:
        if self._composer is None:
            rng = np.random.default_rng([self.seed, 2**32 - 1])
            hosts = "train" if self.part == "train" else "heldout"
            self._composer = Composer(
                load_real_hosts(self.root / "giemsa-macrophages", hosts),
                build_cell_bank(self.txl, rng),
                self.recipe,
            )
        return self._composer

    def compose(self, index: int) -> tuple[np.ndarray, Boxes, str]:
        """The augmented uint8 RGB crop, its boxes and its background: ``txl-pbc``,
        ``segpc-marrow`` or ``bal-macrophages``."""
        rng = np.random.default_rng([self.seed, index])
        r = self.recipe
        marrow = rng.random() < self.p_marrow
        # v2's streams draw nothing more when the recipe leaves lavage and rbc_px off
        bal = bool(r.p_bal) and not marrow and rng.random() < r.p_bal
        wide = r.rbc_px != (0.0, 0.0)
        if bal:
            item = self.bal[rng.integers(len(self.bal))]
            img, boxes = load_rgb(item.path), item.boxes
            rbc_d = self._rbc_px(rng)
            s = rbc_d / (RBC_UM / BAL_MPP)
            background = "bal-macrophages"
        elif marrow:
            path = self.marrow[rng.integers(len(self.marrow))]
            img = load_rgb(path)
            m = cv2.imread(str(path.parent.parent / "masks" / path.name), cv2.IMREAD_GRAYSCALE)
            n, _, stats, _ = cv2.connectedComponentsWithStats((m > 127).astype(np.uint8))
            comp = stats[1:][stats[1:, cv2.CC_STAT_AREA] >= 100]
            # touching plasma cells merge into one component: drop the cluster boxes
            side, short = comp[:, 2:4].max(1), comp[:, 2:4].min(1)
            comp = comp[(side <= MAX_PLASMA_CELL_RBC * SEGPC_RBC_PX) & (side <= 1.7 * short)]
            boxes = np.zeros((len(comp), 5), np.float32)
            boxes[:, 0], boxes[:, 1] = comp[:, 0], comp[:, 1]
            boxes[:, 2], boxes[:, 3] = comp[:, 0] + comp[:, 2], comp[:, 1] + comp[:, 3]
            boxes[:, 4] = C["nucleated"]
            if wide:
                rbc_d = self._rbc_px(rng)
                s = rbc_d / SEGPC_RBC_PX
            else:
                s = 40.0 / SEGPC_RBC_PX * rng.uniform(0.8, 1.25)
                rbc_d = SEGPC_RBC_PX * s
            background = "segpc-marrow"
        else:
            item = self.txl[rng.integers(len(self.txl))]
            img, boxes = load_rgb(item.path), item.boxes
            rbc_d = self._rbc_px(rng) if wide else rng.uniform(30, 52)
            s = rbc_d / item.rbc_diameter
            background = "txl-pbc"
        img, boxes = rescale(img, boxes, s)
        img, boxes = random_crop(img, boxes, self.crop, rng)
        if bal and r.p_bal_engulf:
            img, boxes = self.composer.engulf_in_real_hosts(rng, img, boxes, rbc_d, r.p_bal_engulf)
        elif rng.random() < self.p_hosts:
            img, boxes = self.composer(rng, img, boxes, rbc_d)
        self._aug.set_random_seed(int(rng.integers(2**31)))
        keep = (boxes[:, 2] - boxes[:, 0] >= 1) & (boxes[:, 3] - boxes[:, 1] >= 1)
        boxes = boxes[keep]
        r = self._aug(image=img, bboxes=boxes[:, :4], labels=boxes[:, 4].astype(np.int64))
        out = np.zeros((len(r["bboxes"]), 5), np.float32)
        if len(out):
            out[:, :4], out[:, 4] = r["bboxes"], r["labels"]
        return r["image"], out, background

    def _rbc_px(self, rng: np.random.Generator) -> float:
        """A red-cell diameter drawn log-uniformly from the recipe's ``rbc_px`` (or 40 px)."""
        lo, hi = self.recipe.rbc_px if self.recipe.rbc_px != (0.0, 0.0) else (40.0, 40.0)
        return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        img, boxes, background = self.compose(index)
        t = make_targets(boxes, self.crop)
        neg = np.ones(len(CLASSES), np.float32)
        neg[list(UNSUPERVISED[background])] = 0.0
        x = ((img.astype(np.float32) - MEAN) / STD).transpose(2, 0, 1)
        return {
            "image": torch.from_numpy(np.ascontiguousarray(x)),
            "neg_weight": torch.from_numpy(neg),
            **{k: torch.from_numpy(v) for k, v in t.items()},
        }


class RangeSampler(Sampler[int]):
    """Yields ``start .. start + length - 1``; set ``start`` before each epoch (resumable)."""

    def __init__(self, length: int) -> None:
        self.length, self.start = length, 0

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(range(self.start, self.start + self.length))

    def __len__(self) -> int:
        return self.length


def worker_init(_: int) -> None:
    cv2.setNumThreads(1)
    torch.set_num_threads(1)


def draw(img: np.ndarray, boxes: Boxes) -> np.ndarray:
    colours = [(255, 0, 0), (0, 200, 255), (0, 160, 0), (255, 160, 0), (255, 0, 255),
               (200, 0, 0), (0, 90, 0), (0, 90, 200)]  # fmt: skip
    out = img.copy()
    for x1, y1, x2, y2, c in boxes:
        cv2.rectangle(out, (int(x1), int(y1)), (int(x2), int(y2)), colours[int(c)], 1)
        if int(c) >= 3:
            cv2.putText(
                out,
                CLASSES[int(c)][:6],
                (int(x1), int(y1) + 10),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.35,
                colours[int(c)],
                1,
            )
    return out


if __name__ == "__main__":
    import time

    p = argparse.ArgumentParser(description="dump composed training crops with their boxes")
    p.add_argument(
        "--data-root",
        type=Path,
        default=Path(__file__).resolve().parents[2] / "shared" / "datasets",
    )
    p.add_argument("--dump", type=int, default=4)
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("/tmp"))
    p.add_argument("--config", type=Path, help="a training config: use its data.composer recipe")
    a = p.parse_args()
    recipe = ComposerSection()
    if a.config:
        from .config import load_config

        recipe = load_config(a.config, out=a.out).data.composer
    ds = ComposedCrops(a.data_root, recipe=recipe)
    _ = ds.composer
    t0 = time.perf_counter()
    for i in range(a.start, a.start + a.dump):
        img, boxes, background = ds.compose(i)
        cv2.imwrite(
            str(a.out / f"composed_{i}.png"), cv2.cvtColor(draw(img, boxes), cv2.COLOR_RGB2BGR)
        )
        print(
            i,
            background,
            {CLASSES[c]: int((boxes[:, 4] == c).sum()) for c in np.unique(boxes[:, 4]).astype(int)},
        )
    n = 40
    t0 = time.perf_counter()
    for i in range(n):
        ds[1000 + i]
    print(f"{(time.perf_counter() - t0) / n * 1000:.1f} ms per sample (compose + targets)")
