"""The red-cell size readings behind ``--scale auto``, measured on real TXL-PBC val fields."""

from __future__ import annotations

import pytest
from hemoscan_training.evaluate.common import DEFAULT_DATA_ROOT
from hemoscan_training.scale_readings import reading_ratios

from hemoscan.models.loading import DEFAULT_MODEL


@pytest.mark.skipif(
    not (DEFAULT_DATA_ROOT / "txl-pbc").is_dir(), reason="../shared/datasets is not here"
)
def test_the_default_model_reads_red_cells_near_their_labelled_size() -> None:
    ratios = reading_ratios(DEFAULT_MODEL, DEFAULT_DATA_ROOT, [40.0], every=48)
    assert len(ratios[40.0]) >= 4
    assert all(0.8 < r < 1.25 for r in ratios[40.0])
