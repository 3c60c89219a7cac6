"""The CPU the plain scan spends beside the network, per tile, without the network's noise.

Scans procedurally drawn JPEG tiles once with the default model on the CPU (its ONNX export in
onnxruntime, as the plain scan runs it there; one stream, decoding inline), recording the
network's outputs, then scans them again ``--repeat`` times with those outputs replayed in place
of the network: everything else (loading the model, reading, checking and decoding the image,
normalising, automatic scale, decoding the heatmaps, merging, image-quality checks, writing the
results and the summary) runs as in a real scan. Prints the median wall time and process CPU per
tile over the replayed scans (CPU above wall means work on other threads), and with
``--profile`` the functions that took the most time in one more replayed scan.

This is the part of a tile's cost the scan's own code decides; the network's part is
``benchmarks/scan_throughput.py``'s "network alone". Nothing here is a timed test.

Usage::

    python benchmarks/scan_overhead.py [--tiles 200] [--size 512] [--repeat 5] [--profile]
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import shutil
import statistics
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from scan_throughput import write_tiles

from hemoscan.inference.backends import OnnxBackend, Outputs
from hemoscan.pipeline import scan
from hemoscan.scan_spec import ScanOptions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tiles", type=int, default=200)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="also print the top functions")
    args = parser.parse_args()
    options = ScanOptions(streams=1, workers=0)
    network = OnnxBackend.__call__
    recorded: list[Outputs] = []
    replay: Iterator[Outputs] = iter(())

    def record(self: OnnxBackend, batch: np.ndarray) -> Outputs:
        outputs = network(self, batch)
        recorded.append(outputs)
        return outputs

    def replayed(self: OnnxBackend, batch: np.ndarray) -> Outputs:
        return next(replay)

    with tempfile.TemporaryDirectory() as tmp:
        tiles, out = Path(tmp) / "tiles", Path(tmp) / "out"
        write_tiles(tiles, args.size, args.tiles)
        OnnxBackend.__call__ = record  # type: ignore[method-assign]
        scan([str(tiles)], out, options)
        if not recorded:
            parser.error("the plain scan did not run onnxruntime here (a GPU?): nothing to replay")
        OnnxBackend.__call__ = replayed  # type: ignore[method-assign]
        walls, cpus = [], []
        for _ in range(args.repeat):
            replay = iter(list(recorded))
            shutil.rmtree(out)
            wall, cpu = time.perf_counter(), time.process_time()
            scan([str(tiles)], out, options)
            walls.append((time.perf_counter() - wall) * 1000 / args.tiles)
            cpus.append((time.process_time() - cpu) * 1000 / args.tiles)
        print(f"{args.tiles} tiles of {args.size} px, {len(recorded)} network passes replayed; "
              f"per tile, beside the network: wall {statistics.median(walls):.2f} ms "
              f"({min(walls):.2f}-{max(walls):.2f}), CPU {statistics.median(cpus):.2f} ms "
              f"({min(cpus):.2f}-{max(cpus):.2f}), median of {args.repeat} scans")  # fmt: skip
        if args.profile:
            replay = iter(list(recorded))
            shutil.rmtree(out)
            profiler = cProfile.Profile()
            profiler.runcall(scan, [str(tiles)], out, options)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
