"""Run checkpoints (``RUN/last.pt``): everything an exact resume needs, saved atomically.

A checkpoint is a dict of tensors and plain values only, so it loads with
``torch.load(weights_only=True)``: ``model``, ``optimizer`` and ``scheduler`` state dicts,
``epoch`` (the last finished one), ``best`` / ``best_epoch`` (the selection metric),
``bad_epochs`` (early-stopping counter), ``wall_s`` (training time so far), ``rng``
(torch, Python and NumPy generator states) and ``config`` (the resolved config's dict form).
Checkpoints written by the former ``train_detector.py`` (no ``best_epoch``, ``bad_epochs``,
``wall_s``) load too.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

CHECKPOINT_FILE = "last.pt"


def rng_state() -> dict[str, Any]:
    """The global torch (and CUDA, where in use), Python and NumPy generator states."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": (np_state[0], np_state[1].tolist(), *np_state[2:]),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np.asarray(np_state[1], np.uint32), *np_state[2:]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temporary file beside ``path``, then an atomic rename: a run
    killed while saving keeps its previous checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path) -> dict[str, Any]:
    """The checkpoint at ``path`` (tensors on the CPU), with defaults for older keys."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    state.setdefault("best_epoch", -1)  # unknown
    state.setdefault("bad_epochs", 0)
    state.setdefault("wall_s", 0.0)
    return state
