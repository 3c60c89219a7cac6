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

This module is the dataset (:class:`ComposedCrops`) and its sampler; the parts it composes
from: :mod:`.splits` (which fields each part uses), :mod:`.images` (reading, rescaling,
cropping), :mod:`.real_parts` (real hosts, the cell bank), :mod:`.composer` (hosts and their
contents; procedural hosts from :mod:`hemoscan.synthetic.hosts`) and :mod:`.targets`.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Sequence
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from .composer import Composer
from .config import ComposerSection, load_config
from .images import MEAN, STD, load_rgb, random_crop, rescale
from .real_parts import build_cell_bank, load_real_hosts
from .splits import (
    BAL_MPP,
    CLASSES,
    MAX_PLASMA_CELL_RBC,
    RBC_UM,
    SEGPC_RBC_PX,
    UNSUPERVISED,
    Boxes,
    C,
    bal_part,
    marrow_part,
    txl_part,
)
from .targets import make_targets


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
        if background == "txl-pbc" and r.p_free_platelets and rng.random() < r.p_free_platelets:
            img, boxes = self.composer.free_platelets(rng, img, boxes, rbc_d)
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


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m hemoscan_training.data``: write composed crops with their boxes drawn."""
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
    a = p.parse_args(argv)
    recipe = ComposerSection()
    if a.config:
        recipe = load_config(a.config, out=a.out).data.composer
    ds = ComposedCrops(a.data_root, recipe=recipe)
    _ = ds.composer
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


if __name__ == "__main__":
    main()
