"""What this machine offers a scan: CPU cores, exact int8 arithmetic, and whether a GPU driver
is present.

Standard library only at import, so that a scan on the CPU learns it has no GPU without
importing torch (1.1 s of the 1.9 s a plain `hemoscan scan` spent starting, measured); only
:func:`cuda_available` imports torch, and only where a GPU driver is present.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Files a loaded NVIDIA (CUDA) or AMD (ROCm) GPU driver provides; without any of them torch
#: cannot see a GPU either.
GPU_DRIVER_FILES: tuple[str, ...] = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/kfd")
#: x86 CPU flags of VNNI, the instructions that multiply-accumulate int8 into 32-bit sums.
VNNI_FLAGS: frozenset[str] = frozenset({"avx512_vnni", "avx_vnni"})


def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def cpu_has_vnni(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether the CPU has VNNI (:data:`VNNI_FLAGS`, read from Linux's ``cpuinfo``; ``False``
    where it cannot be read). onnxruntime's int8 convolutions are exact with it; without it, on
    AVX2, they add uint8 x int8 products in 16 bits, which can saturate with full 8-bit weights.
    """
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return False
    for line in text.splitlines():
        if line.startswith("flags"):
            return bool(VNNI_FLAGS & set(line.partition(":")[2].split()))
    return False


def gpu_driver_present() -> bool:
    """Whether a GPU driver is loaded (a GPU may then be usable; torch decides)."""
    return any(Path(f).exists() for f in GPU_DRIVER_FILES)


def cuda_available() -> bool:
    """Whether torch can run on a CUDA GPU here (torch is imported only if a driver is present)."""
    if not gpu_driver_present():
        return False
    import torch

    return bool(torch.cuda.is_available())


def device_type(device: str) -> str:
    """``"cpu"``, ``"cuda"``, ... of a torch device string (``"cuda:1"`` -> ``"cuda"``)."""
    return device.split(":", 1)[0]
