"""Peak memory of ``hemoscan scan`` as the number of tiles grows (it should stay flat).

For each count, a folder of that many JPEG tiles is made (hard links to a small pool of
procedurally generated tiles, so 10,000 tiles cost no disk), scanned in a fresh process, and
the process's peak resident memory (``ru_maxrss``) is printed with the time taken. Usage::

    python benchmarks/scan_memory.py [--counts 1000 10000] [--size 256] [--backend auto]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from hemoscan.models.loading import DEFAULT_MODEL

# The child's own peak (VmHWM of its address space): ru_maxrss would also count the parent's
# resident memory at the fork, e.g. a large synthetic slide it has just written.
CHILD = """
import json, resource, sys, time
from hemoscan.pipeline import ScanOptions, scan
src, out, model, backend = sys.argv[1:5]
t0 = time.perf_counter()
s = scan([src], out, ScanOptions(model=model, backend=backend, workers=2))
try:
    with open("/proc/self/status") as f:
        peak = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
except OSError:  # not Linux
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"tiles": s.tiles_scanned_now, "failed": s.tiles_failed,
                  "background": s.regions_background, "seconds": time.perf_counter() - t0,
                  "peak_rss_mib": peak}))
"""


def scan_in_fresh_process(source: Path, out: Path, model: str, backend: str) -> dict:
    """Scan ``source`` into ``out`` in a new Python process; its counts, time and peak RSS."""
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(source), str(out), model, backend],
        capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode:
        sys.exit(f"scan of {source} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--backend", default="auto", choices=["auto", "torch", "onnx"])
    parser.add_argument("--counts", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--pool", type=int, default=32, help="distinct tiles the links point to")
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).parent))
    from scan_throughput import write_tiles

    print(f"model {args.model}, backend {args.backend}, {args.size}x{args.size} JPEG tiles")
    print(f"{'tiles':>7} {'seconds':>8} {'tiles/s':>8} {'peak RSS MiB':>13}")
    with tempfile.TemporaryDirectory() as tmp:
        pool = write_tiles(Path(tmp) / "pool", args.size, args.pool)
        for count in args.counts:
            folder = Path(tmp) / f"tiles{count}"
            folder.mkdir()
            for i in range(count):
                (folder / f"tile_{i:05d}.jpg").hardlink_to(pool[i % len(pool)])
            r = scan_in_fresh_process(folder, Path(tmp) / f"out{count}", args.model, args.backend)
            print(f"{r['tiles']:>7} {r['seconds']:8.1f} {r['tiles'] / r['seconds']:8.1f} "
                  f"{r['peak_rss_mib']:13.0f}")  # fmt: skip


if __name__ == "__main__":
    main()
