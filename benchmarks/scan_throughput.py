"""Scan throughput on this machine, against the floor and a plain baseline.

Writes procedurally generated JPEG tiles (512x512 and 1024x1024), then for each size prints
tiles/s for:

- ``decode + preprocess``: decoding, colour conversion and normalisation only (the floor no
  scanner beats);
- ``model only``: the network alone on ready tensors, per backend (PyTorch eager, ONNX Runtime;
  ``onnx-int8``: ONNX Runtime on an int8 export calibrated on generated example tiles, see
  ``hemoscan export --quantize int8``); for ONNX both one stream using every core and one
  single-threaded stream per core (the scan's default), the latter being the figure the scan
  is compared with;
- ``scan``: ``hemoscan scan`` end to end (decode threads, network, post-processing, writing),
  per backend, and its ratio to ``model only``;
- ``baseline``: what a user would write themselves: torchvision's
  ``fasterrcnn_mobilenet_v3_large_fpn`` (random weights: only speed is measured), each image
  opened with PIL, converted with ``to_tensor`` and run one by one.

Usage::

    python benchmarks/scan_throughput.py [--model NAME_OR_FOLDER] [--tiles 48] [--sizes 512 1024]
        [--backends torch onnx onnx-int8]
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

from hemoscan.examples import render_example_tile
from hemoscan.inference.backends import cpu_cores
from hemoscan.io.images import read_tile
from hemoscan.model_export.onnx import export_onnx
from hemoscan.models.loading import DEFAULT_MODEL, LoadedModel, load_model
from hemoscan.models.onnx_format import load_onnx_model, onnx_session
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


def rate(fn: Callable[[], int]) -> float:
    """Items per second of ``fn`` (which returns how many items it processed)."""
    t0 = time.perf_counter()
    n = fn()
    return n / (time.perf_counter() - t0)


def row(size: int, what: str, tiles_per_s: float, note: str = "") -> None:
    print(f"{size:>4}x{size:<4} {what:<30} {tiles_per_s:8.1f} {1000 / tiles_per_s:8.1f}  {note}")


def decode_floor(model: LoadedModel, tiles: list[Path]) -> float:
    mean = np.asarray(model.config.mean, np.float32) * 255
    std = np.asarray(model.config.std, np.float32) * 255

    def run() -> int:
        for path in tiles:
            image = read_tile(path)
            np.ascontiguousarray(((image.astype(np.float32) - mean) / std).transpose(2, 0, 1))
        return len(tiles)

    return rate(run)


def streams_rate(onnx_file: Path, x: np.ndarray, reps: int, streams: int) -> float:
    """Network passes per second of ``streams`` threads sharing one single-threaded session,
    each running its own tiles (as ``hemoscan scan --backend onnx`` does by default)."""
    session = onnx_session(onnx_file, threads=1)
    session.run(None, {"image": x})
    with ThreadPoolExecutor(streams) as pool:
        return rate(lambda: len(list(pool.map(lambda _: session.run(None, {"image": x}),
                                              range(reps)))))  # fmt: skip


def baseline(tiles: list[Path]) -> float:
    from PIL import Image
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_fpn
    from torchvision.transforms.functional import to_tensor

    net = fasterrcnn_mobilenet_v3_large_fpn(
        weights=None, weights_backbone=None, num_classes=6
    ).eval()

    def run() -> int:
        with torch.inference_mode():
            for path in tiles:
                net([to_tensor(Image.open(path).convert("RGB"))])
        return len(tiles)

    run_warm = tiles[:1]
    with torch.inference_mode():
        net([to_tensor(Image.open(run_warm[0]).convert("RGB"))])
    return rate(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--tiles", type=int, default=48)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument(
        "--backends", nargs="+", default=["torch", "onnx"], choices=["torch", "onnx", "onnx-int8"]
    )
    parser.add_argument("--streams", type=int, default=None,
                        help="scan streams (default: hemoscan's, one per core with onnx)")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()

    model = load_model(args.model)
    print(f"model {model.config.name} {model.config.version} ({model.config.architecture}); "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}; {args.tiles} JPEG tiles per size")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        onnx_folders = {"onnx": Path(tmp) / "onnx", "onnx-int8": Path(tmp) / "onnx-int8"}
        if "onnx" in args.backends:
            export_onnx(model, onnx_folders["onnx"])
        if "onnx-int8" in args.backends:
            export_onnx(model, onnx_folders["onnx-int8"], quantize="int8")
            q = load_onnx_model(str(onnx_folders["onnx-int8"])).quantization_record or {}
            print(f"onnx-int8: {q.get('method')}, calibrated on {q.get('images')} example tiles; "
                  f"heatmap probability vs float32 on them: max |diff| "
                  f"{q.get('max_abs_heatmap_prob_diff')}, mean {q.get('mean_abs_heatmap_prob_diff')}")  # fmt: skip
        print(f"{'tile':>9} {'what':<30} {'tiles/s':>8} {'ms/tile':>8}")
        for size in args.sizes:
            tiles = write_tiles(Path(tmp) / f"tiles{size}", size, args.tiles)
            row(size, "decode + preprocess (floor)", decode_floor(model, tiles))
            x = np.random.default_rng(0).normal(size=(1, 3, size, size)).astype(np.float32)
            reps = max(16, args.tiles)
            for backend in args.backends:
                if backend == "torch":
                    xt = torch.from_numpy(x)

                    def forward() -> None:
                        with torch.inference_mode():
                            model.module(xt)

                    forward()
                    model_only = rate(lambda: [forward() for _ in range(reps)] and reps)
                    row(size, f"model only, {backend}", model_only)
                    scan_model = model
                else:
                    folder = onnx_folders[backend]
                    one = onnx_session(folder / "model.onnx")  # every core on one tile
                    one.run(None, {"image": x})
                    serial = rate(lambda: [one.run(None, {"image": x}) for _ in range(reps)] and reps)
                    row(size, f"model only, {backend}, 1 stream", serial)
                    model_only = streams_rate(folder / "model.onnx", x, reps, cpu_cores())
                    row(size, f"model only, {backend}, {cpu_cores()} streams", model_only)
                    # loaded by the scan itself, with the threads its streams get
                    scan_model = None
                options = ScanOptions(model=str(onnx_folders.get(backend, args.model)),
                                      workers=args.workers, backend=backend.split("-")[0],
                                      streams=args.streams)  # fmt: skip
                # warm-up so that one-off start-up costs are not counted
                scan([str(tiles[0])], Path(tmp) / f"warm{size}{backend}", options, model=scan_model)
                summary = scan(
                    [str(p) for p in tiles], Path(tmp) / f"out{size}{backend}", options,
                    model=scan_model,
                )  # fmt: skip
                e2e = summary.tiles_per_second
                row(size, f"scan end to end, {backend}", e2e, f"{e2e / model_only:.0%} of model only")
            if not args.no_baseline:
                row(size, "baseline fasterrcnn_mnv3 plain", baseline(tiles))


if __name__ == "__main__":
    main()
