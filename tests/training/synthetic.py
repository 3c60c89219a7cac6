"""Tiny synthetic annotated sets and configs for the training tests (written into tmp folders).

Images are light fields with red discs (``rbc``, diameter 14 px) and larger purple discs
(``nucleated``, 22 px), labelled as YOLO txt (class 0 nucleated, 1 rbc) under
``images/<split>`` and ``labels/<split>``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import cv2
import numpy as np
import yaml

RBC_D, NUCLEATED_D = 14, 22
CLASS_MAP = {"0": "nucleated", "1": "rbc"}


def disc_field(
    rng: np.random.Generator, size: int, n: int
) -> tuple[np.ndarray, list[tuple[int, float, float, float]]]:
    """uint8 RGB ``[size, size, 3]`` and its discs as ``(yolo class, cx, cy, diameter)`` pixels."""
    img = np.full((size, size, 3), (235, 225, 230), np.uint8)
    discs: list[tuple[int, float, float, float]] = []
    for k in range(n * 20):
        if len(discs) == n:
            break
        nucleated = len(discs) % 3 == 0
        d = NUCLEATED_D if nucleated else RBC_D
        cx, cy = (int(v) for v in rng.integers(d // 2 + 2, size - d // 2 - 2, 2))
        if any((cx - x) ** 2 + (cy - y) ** 2 < ((d + dd) / 2 + 3) ** 2 for _, x, y, dd in discs):
            continue
        colour = (120, 50, 150) if nucleated else (220, 120, 120)
        cv2.circle(img, (cx, cy), d // 2, colour, -1)
        discs.append((0 if nucleated else 1, float(cx), float(cy), float(d)))
    return img, discs


def write_yolo_set(
    root: Path, splits: dict[str, int] | None = None, size: int = 112, seed: int = 0
) -> Path:
    """A YOLO set in ``root`` (``{"train": 6, "val": 2}`` images by default); returns ``root``."""
    for s, (split, n) in enumerate((splits or {"train": 6, "val": 2}).items()):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            img, discs = disc_field(np.random.default_rng([seed, s, i]), size, 6)
            cv2.imwrite(
                str(root / "images" / split / f"f{i}.png"), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
            )
            lines = [
                f"{c} {x / size:.6f} {y / size:.6f} {d / size:.6f} {d / size:.6f}"
                for c, x, y, d in discs
            ]
            (root / "labels" / split / f"f{i}.txt").write_text("\n".join(lines) + "\n")
    return root


def tiny_config(root: Path, **sections: dict[str, Any]) -> dict[str, Any]:
    """A config training ``centernet_mnv3s`` (random init) on the YOLO set in ``root`` for
    2 epochs x 3 steps of 2 crops of 64 px, deterministic, on one thread. ``sections``
    update the sections' keys (e.g. ``schedule={"epochs": 3}``)."""
    entry = {"format": "yolo", "root": str(root), "class_map": CLASS_MAP}
    cfg: dict[str, Any] = {
        "model": {"architecture": "centernet_mnv3s", "pretrained": False, "name": "tiny-trained",
                  "rbc_diameter_px": RBC_D},
        "data": {"source": "annotated", "train": [{**entry, "split": "train"}],
                 "val": [{**entry, "split": "val"}], "crop": 64, "batch_size": 2},
        "schedule": {"epochs": 2, "steps_per_epoch": 3},
        "run": {"workers": 0, "threads": 1, "deterministic": True, "progress": False, "log_every": 100},
    }  # fmt: skip
    for name, values in sections.items():
        cfg.setdefault(name, {}).update(values)
    return cfg


def write_config(path: Path, cfg: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path
