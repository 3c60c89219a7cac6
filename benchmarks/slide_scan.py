"""Cost of scanning one large synthetic whole-slide image: time, regions and peak memory.

Writes a pyramidal TIFF (JPEG tiles, 4 levels) of ``--side`` x ``--side`` pixels at
``--mpp`` µm/px: white glass with a smear band covering about ``--tissue`` of the slide, filled
with procedurally generated smear tiles (red cells, white cells, macrophages). Then
``hemoscan scan SLIDE`` runs in a fresh process, which reports its peak resident memory
(``ru_maxrss``), the regions scanned and skipped as glass, and the time taken. Usage::

    python benchmarks/slide_scan.py [--side 12000] [--tissue 0.15] [--backend auto]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import tifffile

from hemoscan.examples import render_example_tile
from hemoscan.models.loading import DEFAULT_MODEL


def synthetic_slide(path: Path, side: int, tissue: float, mpp: float, seed: int = 0) -> float:
    """Write the slide; return the fraction of its area that is smear."""
    rng = np.random.default_rng(seed)
    level0 = np.full((side, side, 3), 242, np.uint8)
    patch = 512
    band = max(patch, round(side * tissue / patch) * patch)  # whole patches of smear
    y0 = (side - band) // 2
    # red cells of 7.5 µm at this pixel size
    rbc_px = 7.5 / mpp
    for y in range(y0, y0 + band, patch):
        for x in range(0, side, patch):
            h, w = min(patch, y0 + band - y), min(patch, side - x)
            tile, _ = render_example_tile(rng, size=(w, h), rbc_diameter_px=rbc_px,
                                          hemophagocytes=int(rng.random() < 0.1),
                                          macrophages=int(rng.random() < 0.3))  # fmt: skip
            level0[y : y + h, x : x + w] = tile
    levels = [level0]
    while min(levels[-1].shape[:2]) > 2048:
        h, w = levels[-1].shape[:2]
        levels.append(cv2.resize(levels[-1], (w // 4, h // 4), interpolation=cv2.INTER_AREA))
    with tifffile.TiffWriter(path, bigtiff=True) as tw:
        for i, image in enumerate(levels):
            res = 1e4 / (mpp * 4**i)
            kw = {"subifds": len(levels) - 1} if i == 0 else {"subfiletype": 1}
            tw.write(image, tile=(256, 256), photometric="rgb", compression="jpeg",
                     resolution=(res, res), resolutionunit="CENTIMETER", **kw)  # fmt: skip
    return band / side


def main() -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    from scan_memory import scan_in_fresh_process

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx"])
    parser.add_argument("--side", type=int, default=12000, help="level-0 width and height, px")
    parser.add_argument("--tissue", type=float, default=0.15, help="fraction of the slide smeared")
    parser.add_argument("--mpp", type=float, default=0.25, help="µm per pixel of level 0")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        slide = Path(tmp) / "synthetic.tif"
        t0 = time.perf_counter()
        fraction = synthetic_slide(slide, args.side, args.tissue, args.mpp)
        print(f"slide {args.side}x{args.side} px ({args.side**2 / 1e6:.0f} Mpx) at {args.mpp} µm/px, "
              f"{fraction:.0%} smear, {slide.stat().st_size / 2**20:.0f} MiB on disk "
              f"(written in {time.perf_counter() - t0:.0f} s); model {args.model}, "
              f"backend {args.backend}")  # fmt: skip
        r = scan_in_fresh_process(slide, Path(tmp) / "out", args.model, args.backend)
        mpx = args.side**2 / 1e6
        print(f"regions scanned {r['tiles']}, skipped as glass {r['background']}, "
              f"failed {r['failed']}; {r['seconds']:.1f} s per slide "
              f"({r['tiles'] / r['seconds']:.2f} regions/s, {mpx / r['seconds']:.1f} slide Mpx/s, "
              f"{fraction * mpx / r['seconds']:.1f} smear Mpx/s); "
              f"peak RSS {r['peak_rss_mib']:.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
