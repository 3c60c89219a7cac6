"""What this machine offers a scan: CPU cores, and whether a GPU driver is present.

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


def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


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
