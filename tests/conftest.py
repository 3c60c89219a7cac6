"""Shared synthetic fixtures: a hand-set tiny blob-detector model and images of dark discs."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from hemoscan.datamodel import CELL_CLASSES
from hemoscan.models import ModelConfig, create_model, load_model, save_model_folder

TINY_CONFIG = ModelConfig(
    name="tiny-test",
    version="0.0.1",
    architecture="tiny_blob",
    classes=CELL_CLASSES,
    mean=(0.5, 0.5, 0.5),
    std=(0.25, 0.25, 0.25),
    default_threshold=0.5,
    tile_size=256,
    overlap=64,
    description="hand-set dark-disc detector for tests",
)


def disc_image(
    width: int, height: int, n: int, seed: int = 0, radius: int = 12
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """HWC uint8 RGB light background with ``n`` non-touching dark discs; returns centres."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 230, np.uint8)
    centres: list[tuple[int, int]] = []
    for _ in range(n * 50):
        if len(centres) == n:
            break
        x = int(rng.integers(radius + 2, width - radius - 2))
        y = int(rng.integers(radius + 2, height - radius - 2))
        if all((x - a) ** 2 + (y - b) ** 2 > (3 * radius) ** 2 for a, b in centres):
            centres.append((x, y))
            cv2.circle(image, (x, y), radius, (110, 40, 60), -1)
    return image, centres


def write_image(path: Path, image: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models") / "tiny"
    save_model_folder(create_model("tiny_blob", len(CELL_CLASSES)), TINY_CONFIG, folder)
    return folder


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir: Path):
    return load_model(str(tiny_model_dir))


@pytest.fixture
def tile_folder(tmp_path: Path) -> Path:
    """Two samples (folders) of three 200x160 PNG tiles, each with 4 discs."""
    root = tmp_path / "tiles"
    for s, sample in enumerate(("patient_A", "patient_B")):
        for i in range(3):
            image, _ = disc_image(200, 160, 4, seed=10 * s + i)
            write_image(root / sample / f"tile_{i}.png", image)
    return root
