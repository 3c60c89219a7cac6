"""Throughput of the plain ``hemoscan scan`` on this machine, against the network alone and a
plain baseline, in one run.

Writes procedurally generated JPEG tiles (512x512 and 1024x1024 by default), then per size prints
tiles/s (and megapixels/s) for:

- ``decode + preprocess``: the scan's own decoding, colour conversion and normalisation only, on
  one thread (the floor no scanner beats);
- ``network alone``: the default model in the backend ``--backend auto`` picks here (on the CPU:
  its shipped ONNX export in onnxruntime), with the scan's default inference streams, on ready
  tensors of the tile's size: one pass per tile;
- ``hemoscan scan (default)``: the plain command ``hemoscan scan TILES --out DIR``, as a user
  runs it (automatic magnification included), timed whole (start-up and model loading
  included, hemoscan byte-compiled first as pip installs it) and as the scan reports it (its own
  tiles/s, from its first tile to its last);
- ``--also torch int8``: the same scan with ``--backend torch``, or with the int8 export the
  default model carries, where it carries one (``--precision int8``; its network alone too), for
  comparison;
- ``--compare MODEL ...``: other shipped models (e.g. the previous default), the network alone
  and the scan with ``--model MODEL``, in the same run;
- ``baseline``: what a user would write themselves: torchvision's
  ``fasterrcnn_mobilenet_v3_large_fpn`` (random weights: only speed is measured), each image
  opened with PIL, converted with ``to_tensor`` and run one by one (on ``--baseline-tiles``).

The summary lines give the default command against the baseline and as a share of the network
alone. ``--repeat N`` measures the network alone and the default command N times in turn and
prints their medians with the range (this machine's speed drifts by about 10% between runs), and
the share as the median over the N scans of each against the mean of the network alone measured
just before and just after it (one more measurement closes the last pair).
Run it on a quiet machine; nothing here is a timed test.

Usage::

    python benchmarks/scan_throughput.py [--tiles 200] [--sizes 512 1024] [--also torch int8]
        [--compare MODEL ...] [--repeat 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

from hemoscan.hardware import cpu_cores
from hemoscan.inference.backends import default_streams, resolve_backend
from hemoscan.inference.preprocess import normalisation, normalise_image
from hemoscan.io.images import read_tile
from hemoscan.models.config import ModelConfig
from hemoscan.models.loading import DEFAULT_MODEL, INT8_ONNX_PIN, load_model, read_manifest
from hemoscan.models.onnx_format import load_onnx_model, onnx_session
from hemoscan.synthetic.tile import render_example_tile


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


def spread(values: tuple[float, ...]) -> str:
    """``"N runs low-high"`` of repeated measurements, or nothing for one."""
    return f"{len(values)} runs {min(values):.1f}-{max(values):.1f}" if len(values) > 1 else ""


def share_spread(shares: list[float]) -> str:
    """`` (median of N bracketed runs, low-high)`` of repeated shares, or nothing for one."""
    if len(shares) < 2:
        return ""
    return f" (median of {len(shares)} bracketed runs, {min(shares):.0%}-{max(shares):.0%})"


def row(size: int, what: str, tiles_per_s: float, note: str = "") -> None:
    mpx = tiles_per_s * size * size / 1e6
    print(f"{size:>4}x{size:<4} {what:<44} {tiles_per_s:8.1f} {1000 / tiles_per_s:8.1f} "
          f"{mpx:7.2f}  {note}")  # fmt: skip


def decode_floor(tiles: list[Path], config: ModelConfig) -> float:
    """Tiles per second through the scan's own decoding and normalisation, on one thread."""
    mean, inv_std = normalisation(config)

    def run() -> int:
        for path in tiles:
            normalise_image(read_tile(path), mean, inv_std)
        return len(tiles)

    return rate(run)


def network_alone(
    model: str, size: int, reps: int, precision: str | None = None
) -> tuple[float, str]:
    """Network passes per second of ``model`` over ``size``-square tensors, in the backend and
    with the streams the plain scan uses here (its export of ``precision``); and their
    description."""
    backend = resolve_backend("auto", model, "cpu")
    streams = default_streams(backend, "cpu")
    x = np.random.default_rng(0).normal(size=(1, 3, size, size)).astype(np.float32)
    if backend == "torch":
        module, xt = load_model(model).module, torch.from_numpy(x)

        def forward() -> None:
            with torch.inference_mode():
                module(xt)

        forward()
        return rate(lambda: [forward() for _ in range(reps)] and reps), "torch, 1 stream"
    exported = load_onnx_model(model, threads=1, precision=precision)
    session = onnx_session(exported.folder / "model.onnx", threads=max(1, cpu_cores() // streams))
    session.run(None, {"image": x})
    with ThreadPoolExecutor(streams) as pool:
        passes = rate(lambda: len(list(pool.map(lambda _: session.run(None, {"image": x}),
                                                range(reps)))))  # fmt: skip
    return passes, f"onnx {'int8' if exported.quantization else 'fp32'}, {streams} streams"


def compile_bytecode() -> None:
    """Byte-compile hemoscan as pip does on install, so the whole command's start-up is a
    user's (a source checkout run with PYTHONDONTWRITEBYTECODE set would compile every time)."""
    import compileall

    import hemoscan

    compileall.compile_dir(Path(hemoscan.__file__).parent, quiet=1)


def plain_command(tiles: Path, out: Path, extra: list[str]) -> tuple[float, float]:
    """Tiles/s of ``hemoscan scan TILES --out OUT [extra]`` timed whole, and as it reports."""
    command = [sys.executable, "-m", "hemoscan.cli.app", "scan", str(tiles), "--out", str(out),
               "--quiet", *extra]  # fmt: skip
    t0 = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    whole = time.perf_counter() - t0
    n = len(list(tiles.glob("*.jpg")))
    reported = float(result.stdout.split(" tiles/s")[0].rsplit(", ", 1)[1])
    return n / whole, reported


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

    with torch.inference_mode():
        net([to_tensor(Image.open(tiles[0]).convert("RGB"))])
    return rate(run)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiles", type=int, default=200, help="tiles per size")
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--also", nargs="*", default=[], choices=["torch", "int8"],
                        help="also scan with these backends")  # fmt: skip
    parser.add_argument("--compare", nargs="*", default=[], metavar="MODEL",
                        help="also measure these shipped models")  # fmt: skip
    parser.add_argument("--baseline-tiles", type=int, default=48)
    parser.add_argument("--repeat", type=int, default=1,
                        help="measure the network alone and the default command this many times "
                             "(medians, with their range)")  # fmt: skip
    args = parser.parse_args()
    if "int8" in args.also and INT8_ONNX_PIN not in read_manifest().get(DEFAULT_MODEL, {}):
        parser.error(f"--also int8: the default model, {DEFAULT_MODEL}, carries no int8 export")

    model = load_model(DEFAULT_MODEL)
    compile_bytecode()
    print(f"model {model.config.name} {model.config.version}; torch {torch.__version__}, "
          f"{cpu_cores()} cores, {platform.processor() or platform.machine()}; "
          f"{args.tiles} JPEG tiles per size")  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        print(f"{'tile':>9} {'what':<44} {'tiles/s':>8} {'ms/tile':>8} {'Mpx/s':>7}")
        for size in args.sizes:
            folder = Path(tmp) / f"tiles{size}"
            tiles = write_tiles(folder, size, args.tiles)
            row(size, "decode + preprocess (floor)", decode_floor(tiles, model.config))
            passes = max(32, args.tiles)
            runs = []  # network alone and the plain command in turn, so drift hits both
            for r in range(args.repeat):
                alone, how = network_alone(DEFAULT_MODEL, size, passes)
                whole, reported = plain_command(folder, Path(tmp) / f"out{size}-{r}", [])
                runs.append((alone, whole, reported))
            # each scan against the network alone measured just before and just after it
            alones = [a for a, _, _ in runs]
            alones.append(network_alone(DEFAULT_MODEL, size, passes)[0])
            shares = [r / ((before + after) / 2)
                      for (_, _, r), before, after in zip(runs, alones, alones[1:])]  # fmt: skip
            alone, whole, reported = (statistics.median(v) for v in zip(*runs))
            ranges = [spread(v) for v in zip(*runs)]
            row(size, f"network alone ({how})", alone, ranges[0])
            row(size, "hemoscan scan (default), whole command", whole,
                "; ".join(filter(None, ["start-up included", ranges[1]])))  # fmt: skip
            share = f"{statistics.median(shares):.0%} of the network alone{share_spread(shares)}"
            row(size, "hemoscan scan (default), as it reports", reported,
                "; ".join(filter(None, [ranges[2], share])))  # fmt: skip
            for also in args.also:
                if also == "int8":
                    int8_alone, how8 = network_alone(DEFAULT_MODEL, size, passes, "int8")
                    row(size, f"network alone ({how8})", int8_alone)
                option = ["--backend", "torch"] if also == "torch" else ["--precision", "int8"]
                whole8, other = plain_command(folder, Path(tmp) / f"out{size}{also}", option)
                row(size, f"hemoscan scan {' '.join(option)}, as it reports", other)
                row(size, f"hemoscan scan {' '.join(option)}, whole command", whole8)
            for name in args.compare:
                other_alone, _ = network_alone(name, size, passes)
                row(size, f"{name}: network alone", other_alone)
                whole_other, other = plain_command(folder, Path(tmp) / f"out{size}{name}",
                                                   ["--model", name])  # fmt: skip
                row(size, f"{name}: scan, as it reports", other,
                    f"{other / other_alone:.0%} of its network alone")  # fmt: skip
                row(size, f"{name}: scan, whole command", whole_other)
            if args.baseline_tiles:
                plain = baseline(tiles[: args.baseline_tiles])
                row(size, "baseline fasterrcnn_mnv3, image by image", plain)
                print(f"{size:>4}x{size:<4} default command (whole) / baseline: "
                      f"{whole / plain:.1f}x;"
                      f" as reported / baseline: {reported / plain:.1f}x")  # fmt: skip


if __name__ == "__main__":
    main()
