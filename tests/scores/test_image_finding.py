"""The scan -> marrow-item suggestion rule and the Gars 2018 research-context lines."""

from __future__ import annotations

import pytest

from hemoscan.datamodel import ENGULFED_TYPES, SampleFindings
from hemoscan.scores import (
    MarrowRule,
    gars_research_context,
    marrow_item,
    suggest_marrow_hemophagocytosis,
)


def _findings(nucleated_cells: int = 1000, ge2: int = 0, **by_engulfed: int) -> SampleFindings:
    return SampleFindings(
        sample="S", counts={}, nucleated_cells_assessed=nucleated_cells, hemophagocytes_per_1000_nucleated=None,
        hemophagocytes_by_engulfed={**dict.fromkeys(ENGULFED_TYPES, 0), **by_engulfed}, engulfed_cells_total={},
        hemophagocytes_with_ge2_nucleated=ge2, macrophages=0, tiles_scanned=3, tiles_failed=0,
    )  # fmt: skip


def test_default_rule_one_hemophagocyte_holding_a_nucleated_cell() -> None:
    yes = suggest_marrow_hemophagocytosis(_findings(nucleated=1))
    assert yes.value is True and "rule met" in yes.reason and "1 holding nucleated" in yes.reason
    no = suggest_marrow_hemophagocytosis(_findings(rbc=5))
    assert no.value is None and "rule not met" in no.reason  # not seen is unknown, not absent


def test_rule_is_configurable() -> None:
    rule = MarrowRule(min_count=2, engulfed_types=("granulocyte", "erythroblast"))
    mixed = _findings(nucleated=3, granulocyte=1, erythroblast=1)
    assert suggest_marrow_hemophagocytosis(mixed, rule).value is None
    assert (
        suggest_marrow_hemophagocytosis(_findings(nucleated=3, erythroblast=2), rule).value is True
    )
    assert (
        "2 definite hemophagocyte(s) holding a granulocyte or erythroblast cell" in rule.describe()
    )


def test_bad_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="engulfed_types"):
        MarrowRule(engulfed_types=("neutrophil",))
    with pytest.raises(ValueError, match="min_count"):
        MarrowRule(min_count=0)


def test_nothing_assessed() -> None:
    s = suggest_marrow_hemophagocytosis(_findings(nucleated_cells=0))
    assert s.value is None and "no nucleated cells assessed" in s.reason


def test_the_marrow_item_has_three_states() -> None:
    seen = marrow_item(_findings(nucleated_cells=26, nucleated=1))
    assert (seen.state, seen.value, seen.label) == ("suggested present", True, "suggested present")
    assert seen.from_image and "rule met" in seen.basis
    unseen = marrow_item(_findings(nucleated_cells=26, rbc=1))
    assert (unseen.state, unseen.value, unseen.label) == ("not seen", None, "not seen (26 cells assessed)")
    assert "no evidence of absence" in unseen.basis and not unseen.from_image
    for given in (True, False):  # the pathologist's value wins over the image, either way
        item = marrow_item(_findings(nucleated=1), pathologist=given)
        assert (item.state, item.value) == ("pathologist", given)
        assert item.label == f"pathologist: {'yes' if given else 'no'}" and not item.from_image


def test_gars_research_lines() -> None:
    lines = gars_research_context(
        _findings(nucleated_cells=2000, ge2=1, granulocyte=2, erythroblast=7)
    )
    assert lines[0].startswith(
        "granulocyte-holding hemophagocytes: 1.00 per 1000 nucleated cells (2/2000); reaches"
    )
    assert "3.50 per 1000" in lines[1] and "below the research threshold >= 4/1000" in lines[1]
    assert "several (>= 2) nucleated cells: 1; reaches" in lines[2]
    assert (
        "not a validated stand-alone diagnostic criterion" in lines[-1] and "Ho et al." in lines[-1]
    )
    assert all(
        "diagnosis" not in line.lower().replace("diagnostic criterion", "") for line in lines
    )


def test_gars_lines_without_cells() -> None:
    assert "rate per 1000 not available" in gars_research_context(_findings(nucleated_cells=0))[0]
