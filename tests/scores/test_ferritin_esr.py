"""Ferritin:ESR ratio (Eloseily 2019): spec §6.1 examples, the 21.5 operator, ESR 0."""

from __future__ import annotations

from decimal import Decimal as D

from hemoscan.labs import parse_panel
from hemoscan.scores.ferritin_esr import ferritin_esr


def _ratio(entries: dict):
    return ferritin_esr(parse_panel("T", entries))


def test_f1_above() -> None:
    r = _ratio({"ferritin": "5000 ng/mL", "ESR": "20 mm/h"})
    assert (r.ratio, r.above_cutoff) == (D(250), True)


def test_f2_below() -> None:
    r = _ratio({"ferritin": "1200 ng/mL", "ESR": "80 mm/h"})
    assert (r.ratio, r.above_cutoff) == (D(15), False)


def test_f3_exactly_at_cutpoint_counts_as_above() -> None:
    r = _ratio({"ferritin": "430 µg/L", "ESR": "20 mm/h"})
    assert r.ratio == D("21.5") and r.above_cutoff is True
    assert _ratio({"ferritin": "429 ng/mL", "ESR": "20 mm/h"}).above_cutoff is False
    assert r.items[-1].note == ""  # the operator choice is documented, not printed on the report


def test_not_computable() -> None:
    assert _ratio({"ferritin": "430 ng/mL", "ESR": "0 mm/h"}).reason == "not computable: ESR is 0"
    r = _ratio({"ferritin": "430 ng/mL"})
    assert (r.ratio, r.above_cutoff, r.reason) == (None, None, "not computable: missing ESR")


def test_to_dict_rounds_the_ratio() -> None:
    d = _ratio({"ferritin": "1000 ng/mL", "ESR": "30 mm/h"}).to_dict()
    assert d["ratio"] == 33.33 and d["above_cutoff"] is True and d["positive"] is True
    assert "acr2.11048" in d["citation"]
