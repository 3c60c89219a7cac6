"""The default model's network on a GPU: tiles/s by batch size and precision, and GPU utilisation.

For each batch size and precision (fp32; fp16 and bf16 under ``torch.autocast``), runs the
network on ``--size`` square tiles copied from pinned host memory (as a scan's decoded tiles
would be), after warm-up, and prints tiles/s, ms per batch and the GPU's mean utilisation while
it ran (sampled with ``nvidia-smi``; "n/a" without it). ``--device cpu`` runs the same on the
CPU (bf16 only), to check the script where no GPU is lent.

Usage::

    python benchmarks/gpu_throughput.py [--device cuda] [--size 512] [--batches 1 8 32]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import threading
import time

import torch

from hemoscan.models.loading import DEFAULT_MODEL, load_model


class Utilisation:
    """Mean GPU utilisation (%) sampled by ``nvidia-smi`` every 100 ms while in the block."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()

    def _sample(self) -> None:
        query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                 "-i", "0"]  # fmt: skip
        while not self._stop.wait(0.1):
            try:
                out = subprocess.run(query, capture_output=True, text=True, timeout=2).stdout
                self.samples.append(float(out.split()[0]))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return

    def __enter__(self) -> Utilisation:
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def text(self) -> str:
        return f"{statistics.mean(self.samples):.0f}%" if self.samples else "n/a"


def run(module: torch.nn.Module, device: torch.device, batch: int, size: int,
        precision: str, seconds: float) -> tuple[float, float, str]:  # fmt: skip
    """(tiles/s, ms per batch, utilisation) of ``module`` on pinned batches for ``seconds``."""
    host = torch.randn(batch, 3, size, size)
    if device.type == "cuda":
        host = host.pin_memory()
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    autocast = (torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext())

    def step() -> None:
        with torch.inference_mode(), autocast:
            module(host.to(device, non_blocking=True))

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    for _ in range(3):
        step()
    sync()
    with Utilisation() as use:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            step()
            n += 1
        sync()
        elapsed = time.perf_counter() - t0
    return n * batch / elapsed, 1000 * elapsed / n, use.text()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--seconds", type=float, default=5.0, help="per configuration")
    args = parser.parse_args()
    device = torch.device(args.device)
    model = load_model(DEFAULT_MODEL)
    module = model.module.to(device).eval()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    precisions = ["fp32", "fp16", "bf16"] if device.type == "cuda" else ["fp32", "bf16"]
    print(f"{model.config.name} on {name}, torch {torch.__version__}, {args.size} px tiles")
    print(f"{'batch':>5} {'precision':>9} {'tiles/s':>9} {'ms/batch':>9} {'GPU use':>8}")
    for batch in args.batches:
        for precision in precisions:
            tiles, ms, use = run(module, device, batch, args.size, precision, args.seconds)
            print(f"{batch:>5} {precision:>9} {tiles:9.1f} {ms:9.1f} {use:>8}")


if __name__ == "__main__":
    main()
