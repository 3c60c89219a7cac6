import pytest

from hemoscan.datamodel import Detection, EngulfedCell
from hemoscan.inference.aggregate import aggregate


def _hemo(*labels: str) -> Detection:
    cells = tuple(EngulfedCell(lbl, 0.9, 1, 1, 2, 2) for lbl in labels)
    return Detection("hemophagocyte", 0.9, 0, 0, 10, 10, cells)


def test_rates_and_engulfed_breakdown() -> None:
    dets = [("s", Detection("nucleated", 0.9, 0, 0, 1, 1))] * 997 + [
        ("s", Detection("macrophage", 0.8, 0, 0, 5, 5)),
        ("s", _hemo("rbc", "rbc")),
        ("s", _hemo("granulocyte", "nucleated", "rbc")),
        ("s", Detection("rbc", 0.9, 0, 0, 1, 1)),
    ]
    (f,) = aggregate([("s", True), ("s", True), ("s", False)], dets)
    assert f.nucleated_cells_assessed == 1000
    assert f.hemophagocytes_per_1000_nucleated == pytest.approx(2.0)
    assert f.hemophagocytes_by_engulfed["rbc"] == 2
    assert f.hemophagocytes_by_engulfed["nucleated"] == 1
    assert f.hemophagocytes_by_engulfed["granulocyte"] == 1
    assert f.engulfed_cells_total["rbc"] == 3
    assert f.engulfed_cells_total["nucleated"] == 2
    assert f.hemophagocytes_with_ge2_nucleated == 1
    assert (f.macrophages, f.tiles_scanned, f.tiles_failed) == (1, 3, 1)


def test_no_nucleated_cells_gives_no_rate() -> None:
    (f,) = aggregate([("s", True)], [("s", Detection("rbc", 0.9, 0, 0, 1, 1))])
    assert f.hemophagocytes_per_1000_nucleated is None
