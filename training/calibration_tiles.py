"""Calibration tiles for an int8 export, from the training parts of the public sets.

An int8 export's value ranges are calibrated on tiles like those the network will see: real
fields at the model's red-cell diameter. This writes ``n`` 512 px JPEG crops, spread evenly over
the TXL-PBC train fields (brought to the model's red-cell diameter by their labelled red
cells), the segpc-marrow training fields and the bal-macrophages training slides (by their
pixel size); never the held-out fields of any evaluation suite::

    python -m hemoscan_training.calibration_tiles OUT [--n 64] [--data-root ../shared/datasets]
    hemoscan export hemoscan-lite0-v3 --quantize int8 --calibration OUT --out INT8_FOLDER
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from hemoscan.io.images import read_tile
from hemoscan.models.loading import DEFAULT_MODEL, load_model

from .evaluate.common import DEFAULT_DATA_ROOT
from .splits import BAL_MPP, RBC_UM, SEGPC_RBC_PX, bal_part, marrow_part, txl_part

SIDE = 512


def _crop(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` resized by ``factor``, then its central ``SIDE`` square (or all of it)."""
    h, w = image.shape[:2]
    size = (max(1, round(w * factor)), max(1, round(h * factor)))
    resized = cv2.resize(
        image, size, interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    )
    y0, x0 = max(0, (size[1] - SIDE) // 2), max(0, (size[0] - SIDE) // 2)
    return resized[y0 : y0 + SIDE, x0 : x0 + SIDE]


def write_calibration_tiles(data_root: Path, out: Path, n: int, rbc_px: float) -> list[Path]:
    """``n`` tiles in ``out``, a third from each set's training part, at ``rbc_px`` red cells."""
    sources = [
        [(t.path, rbc_px / t.rbc_diameter) for t in txl_part(data_root / "txl-pbc", "train")],
        [(p, rbc_px / SEGPC_RBC_PX) for p in marrow_part(data_root / "segpc-marrow", "train")],
        [
            (b.path, rbc_px * BAL_MPP / RBC_UM)
            for b in bal_part(data_root / "bal-macrophages", "train")
        ],
    ]
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for s, fields in enumerate(sources):
        share = n // len(sources) + (s < n % len(sources))
        for k in np.unique(np.linspace(0, len(fields) - 1, share).round().astype(int)):
            path, factor = fields[k]
            tile = _crop(read_tile(path), factor)
            target = out / f"{s}_{k:04d}.jpg"
            cv2.imwrite(
                str(target), cv2.cvtColor(tile, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95]
            )
            written.append(target)
    return written


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("out", type=Path)
    p.add_argument("--n", type=int, default=64)
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    args = p.parse_args()
    rbc_px = load_model(DEFAULT_MODEL).config.rbc_diameter_px
    paths = write_calibration_tiles(args.data_root, args.out, args.n, rbc_px)
    print(f"{len(paths)} calibration tiles -> {args.out}")


if __name__ == "__main__":
    main()
