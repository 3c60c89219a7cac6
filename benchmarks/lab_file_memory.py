"""Peak memory and time of reading a large lab file (it should not grow with the samples).

Writes a wide CSV of N samples (``sample,ferritin,triglycerides,platelets,fever``, about 50
bytes a row: 1,000,000 samples make a 50 MB file), then reads it in a fresh process with
``iter_lab_panels`` (every value parsed, converted and checked, as ``hemoscan scores`` does
before it computes anything) and prints the process's peak resident memory (VmHWM) and the
time taken, for each N. Usage::

    python benchmarks/lab_file_memory.py [--samples 100000 1000000] [--layout wide|long]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

CHILD = """
import json, sys, time
from hemoscan.labs.readers import iter_lab_panels
t0 = time.perf_counter()
n = sum(1 for _ in iter_lab_panels(sys.argv[1]))
with open("/proc/self/status") as f:
    peak = next(int(l.split()[1]) for l in f if l.startswith("VmHWM:")) / 1024
print(json.dumps({"samples": n, "seconds": round(time.perf_counter() - t0, 1),
                  "peak_rss_mib": round(peak, 1)}))
"""


def write_file(path: Path, samples: int, layout: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        if layout == "wide":
            f.write("sample,ferritin,triglycerides,platelets,fever\n")
            for i in range(samples):
                f.write(f"P{i:07d},{1000 + i % 9000} ng/mL,{1 + i % 7}.{i % 10} mmol/L,"
                        f"{50 + i % 300} x10^9/L,{'yes' if i % 2 else 'no'}\n")  # fmt: skip
        else:
            f.write("sample,analyte,value,unit\n")
            for i in range(samples):
                f.write(f"P{i:07d},ferritin,{1000 + i % 9000},ng/mL\n"
                        f"P{i:07d},triglycerides,{1 + i % 7}.{i % 10},mmol/L\n")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", type=int, nargs="+", default=[100_000, 1_000_000])
    p.add_argument("--layout", choices=("wide", "long"), default="wide")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.samples:
            path = Path(tmp) / f"labs-{n}.csv"
            write_file(path, n, args.layout)
            run = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True,
                                 text=True, check=True)  # fmt: skip
            record = json.loads(run.stdout)
            record.update(layout=args.layout, file_mb=round(path.stat().st_size / 1e6, 1))
            print(json.dumps(record))
            path.unlink()


if __name__ == "__main__":
    main()
