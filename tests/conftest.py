"""Shared synthetic fixtures: a hand-set tiny blob-detector model and images of dark discs."""

from __future__ import annotations

import ctypes
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from hemoscan.datamodel import CELL_CLASSES, Detection, EngulfedCell
from hemoscan.models import LoadedModel, ModelConfig, create_model, load_model, save_model_folder

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


HOST_CLASSES = (*CELL_CLASSES, "engulfed_rbc", "engulfed_nucleated", "engulfed_platelet")


class ScriptedNet(torch.nn.Module):
    """Returns the same CenterNet outputs for any input: fixed boxes ``(class, cx, cy, w, h)``,
    each a peak of logit 3 (score 0.95) unless a sixth value gives its logit.

    Lets pipeline tests exercise hemophagocytes and engulfed cells without a trained model.
    """

    stride = 8

    def __init__(self, boxes: list[tuple[float, ...]]) -> None:
        super().__init__()
        self.boxes = boxes

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, _, h, w = x.shape
        s = self.stride
        heat = torch.full((b, len(HOST_CLASSES), h // s, w // s), -20.0)
        size = torch.zeros((b, 2, h // s, w // s))
        offset = torch.zeros((b, 2, h // s, w // s))
        for k, cx, cy, bw, bh, *logit in self.boxes:
            ix, iy = int(cx // s), int(cy // s)
            heat[:, int(k), iy, ix] = logit[0] if logit else 3.0
            size[:, :, iy, ix] = torch.tensor([math.log(bw / s), math.log(bh / s)])
            offset[:, :, iy, ix] = torch.tensor([cx / s - ix, cy / s - iy])
        return heat, size, offset


#: What :func:`hemophagocyte_model` finds in every image.
HEMOPHAGOCYTE_SCENE: list[tuple[float, ...]] = [
    (4, 100.0, 100.0, 120.0, 110.0),  # hemophagocyte
    (5, 80.0, 90.0, 24.0, 24.0),  # engulfed rbc
    (5, 120.0, 110.0, 24.0, 24.0),  # engulfed rbc
    (6, 100.0, 70.0, 30.0, 30.0),  # engulfed nucleated
    (3, 200.0, 200.0, 90.0, 80.0),  # macrophage
    (0, 240.0, 40.0, 30.0, 30.0),  # rbc
]


def scripted_model(boxes: list[tuple[float, ...]]) -> LoadedModel:
    """A model whose network is :class:`ScriptedNet` (``boxes``); every threshold is 0.3."""
    config = ModelConfig(name="scripted", version="0", architecture="tiny_blob", classes=HOST_CLASSES,
                         tile_size=512, overlap=128, weights_sha256="0" * 64)  # fmt: skip
    return LoadedModel(config=config, module=ScriptedNet(boxes), sha256="0" * 64, folder=Path("."))


@pytest.fixture
def hemophagocyte_model() -> LoadedModel:
    """A scripted model that finds one hemophagocyte holding two red cells and a nucleated cell,
    a macrophage and a free red cell in every (at least 256 x 256) image."""
    return scripted_model(HEMOPHAGOCYTE_SCENE)


def sample_detections() -> tuple[Detection, Detection, Detection]:
    """``(rbc, hemophagocyte, platelet)`` for export tests; the hemophagocyte holds an engulfed red
    cell and an engulfed granulocyte."""
    hemo = Detection(
        "hemophagocyte",
        0.912345678,
        100.0,
        50.0,
        180.5,
        140.25,
        engulfed_cells=(
            EngulfedCell("rbc", 0.8, 110.0, 60.0, 120.0, 70.0),
            EngulfedCell("granulocyte", 0.7, 130.0, 80.0, 150.0, 100.0),
        ),
    )
    rbc = Detection("rbc", 0.5, 10.123, 20.456, 30.0, 40.0)
    platelet = Detection("platelet", 0.6, 1.0, 2.0, 4.0, 6.0)
    return rbc, hemo, platelet


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [(f, ctypes.c_uint32) for f in ("effective", "permitted", "inheritable")]


#: CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH: what lets root ignore file permissions.
_DAC_CAPABILITIES = (1 << 1) | (1 << 2)


@contextmanager
def unprivileged() -> Iterator[None]:
    """Run the block bound by file permissions: as root, without the capabilities that ignore
    them (taken from this thread's effective set, and from threads started in the block;
    restored after). For other users, file permissions bind already."""
    if os.geteuid() != 0:
        yield
        return
    libc = ctypes.CDLL(None, use_errno=True)
    header, data = _CapHeader(0x20080522, 0), (_CapData * 2)()  # _LINUX_CAPABILITY_VERSION_3
    if libc.capget(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capget failed")
    saved = data[0].effective
    data[0].effective = saved & ~_DAC_CAPABILITIES
    if libc.capset(ctypes.byref(header), data) != 0:
        raise OSError(ctypes.get_errno(), "capset failed")
    try:
        yield
    finally:
        data[0].effective = saved
        libc.capset(ctypes.byref(header), data)
