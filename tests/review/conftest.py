"""A scan folder with suggestions to review: every tile holds one hemophagocyte (2 red cells and
1 nucleated cell engulfed), one macrophage and one red cell (:func:`hemophagocyte_model`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hemoscan.pipeline import ScanOptions, scan
from tests.conftest import disc_image, write_image


def scan_folder(model, root: Path, tiles_per_sample: dict[str, int]) -> Path:
    """Scan ``tiles_per_sample`` 320 x 288 tiles per sample into ``root/scan``."""
    for sample, n in tiles_per_sample.items():
        for i in range(n):
            write_image(root / "tiles" / sample / f"field_{i:03d}.png", disc_image(320, 288, 2, seed=i)[0])
    out = root / "scan"
    scan([str(root / "tiles")], out, ScanOptions(scale=1.0, workers=0), model=model)
    return out


@pytest.fixture
def scanned(hemophagocyte_model, tmp_path: Path) -> Path:
    """Two samples: P1 with 3 tiles, P2 with 2 (5 hemophagocytes and 5 macrophages)."""
    return scan_folder(hemophagocyte_model, tmp_path, {"P1": 3, "P2": 2})
