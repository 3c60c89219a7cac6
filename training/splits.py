"""The public sets' splits and indexes: which fields, patches and hosts each part may use.

TXL-PBC (``txl-pbc``: ``train`` minus every 17th field, ``dev``, ``val``), the segpc marrow
fields (``train``, ``heldout``: every 5th), the bal-macrophages patches (``train``,
``heldout``: whole slides) and the Giemsa macrophages (one held-out host). Boxes are float32
``[N, 5]``: ``x1, y1, x2, y2`` pixels of the image (origin top-left) and a class index into
:data:`CLASSES`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from .config import DEFAULT_CLASSES

#: The composed recipe's classes, in heatmap-channel order.
CLASSES: tuple[str, ...] = DEFAULT_CLASSES
C = {name: i for i, name in enumerate(CLASSES)}
TXL_TO_CLASS = {0: C["nucleated"], 1: C["rbc"], 2: C["platelet"]}
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
