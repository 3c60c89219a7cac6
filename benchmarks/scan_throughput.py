"""Scan throughput on this machine: tiles/s end to end vs. decoding alone.

Writes procedurally generated JPEG tiles (512x512 and 1024x1024), then for each size prints
the decode-only rate (the floor no scanner beats) and ``hemoscan scan`` end to end at
batch 1 and batch 8. Usage::

    python benchmarks/scan_throughput.py [--model NAME_OR_FOLDER] [--tiles 48] [--workers 2]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from hemoscan.examples import render_example_tile
from hemoscan.io.images import read_tile
from hemoscan.models.loading import DEFAULT_MODEL, load_model
from hemoscan.pipeline import ScanOptions, scan


def write_tiles(folder: Path, size: int, n: int) -> list[Path]:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(size)
    paths = []
    for i in range(n):
        image, _ = render_example_tile(rng, size=(size, size), hemophagocytes=i % 2, macrophages=1)
        path = folder / f"tile_{i:04d}.jpg"
        cv2.imwrite(
            str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90]
        )
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--tiles", type=int, default=48)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    args = parser.parse_args()

    model = load_model(args.model)
    print(f"model {model.config.name} {model.config.version} ({model.config.architecture}); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}")  # fmt: skip
    print(f"{'tile':>9} {'what':<24} {'tiles/s':>8} {'ms/tile':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            tiles = write_tiles(Path(tmp) / f"tiles{size}", size, args.tiles)
            t0 = time.perf_counter()
            for path in tiles:
                read_tile(path)
            decode = time.perf_counter() - t0
            print(
                f"{size:>4}x{size:<4} {'decode only':<24} {len(tiles) / decode:8.1f} {1000 * decode / len(tiles):8.1f}"
            )
            # warm-up so that one-off start-up costs are not counted
            scan([str(tiles[0])], Path(tmp) / f"warm{size}", ScanOptions(workers=0), model=model)
            for batch in args.batches:
                x = torch.randn(batch, 3, size, size)
                with torch.inference_mode():
                    t0 = time.perf_counter()
                    for _ in range(max(1, args.tiles // (4 * batch))):
                        model.module(x)
                    n = max(1, args.tiles // (4 * batch)) * batch
                    net = time.perf_counter() - t0
                print(
                    f"{size:>4}x{size:<4} {f'network only, batch {batch}':<24} {n / net:8.1f} {1000 * net / n:8.1f}"
                )
            for batch in args.batches:
                options = ScanOptions(batch_size=batch, workers=args.workers)
                summary = scan(
                    [str(p) for p in tiles], Path(tmp) / f"out{size}-{batch}", options, model=model
                )
                rate = summary.tiles_per_second
                print(
                    f"{size:>4}x{size:<4} {f'scan, batch {batch}':<24} {rate:8.1f} {1000 / rate:8.1f}"
                )


if __name__ == "__main__":
    main()
