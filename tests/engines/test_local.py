"""The local engine's per-tile work: results in input order, OpenCV's threads while it runs."""

from __future__ import annotations

from pathlib import Path

import cv2
import pytest

from hemoscan.engines.local import OPENCV_THREADS_ON_CPU, scan_items
from hemoscan.inference.predictor import Predictor
from hemoscan.io.sources import TileSource
from tests.conftest import disc_image, write_image


@pytest.mark.parametrize("streams", [1, 2])
def test_opencv_runs_single_threaded_beside_a_cpu_scan_and_is_given_back(
    tiny_model, tmp_path: Path, streams: int
) -> None:
    paths = [
        write_image(tmp_path / f"t{i}.png", disc_image(96, 96, 2, seed=i)[0]) for i in range(4)
    ]
    before = cv2.getNumThreads()
    cv2.setNumThreads(3)
    try:
        results = scan_items(Predictor(tiny_model, scale=1.0),
                             (TileSource(str(p), "s") for p in paths), workers=1, streams=streams)  # fmt: skip
        first = next(results)
        assert cv2.getNumThreads() == OPENCV_THREADS_ON_CPU
        names = [first.result.tile] + [r.result.tile for r in results]
        assert cv2.getNumThreads() == 3
    finally:
        cv2.setNumThreads(before)
    assert names == [str(p) for p in paths]
    assert first.result.status == "ok"
