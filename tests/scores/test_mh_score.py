"""MH score (Minoia 2017): spec §5 examples, inclusive boundaries, unit equivalents, missing data."""

from __future__ import annotations

import pytest

from hemoscan.labs import parse_panel
from hemoscan.scores.mh_score import mh_score


def _mh(entries: dict):
    return mh_score(parse_panel("T", entries))


def test_mh1_maximum() -> None:
    r = _mh({"age": "6 months", "ANC": "0.9 x10^9/L", "fibrinogen": "100 mg/dL", "splenomegaly": True,
             "PLT": "50 x10^9/L", "Hb": "7.9 g/dL"})  # fmt: skip
    assert (r.total, r.favours) == (123, "primary HLH") and [i.points for i in r.items] == [
        37,
        37,
        15,
        12,
        11,
        11,
    ]


def test_mh2_mas_favoured() -> None:
    r = _mh({"age": "8 years", "ANC": "5.0 x10^9/L", "fibrinogen": "250 mg/dL", "splenomegaly": True,
             "PLT": "150 x10^9/L", "Hb": "10 g/dL"})  # fmt: skip
    assert (r.total, r.favours) == (12, "MAS")


def test_mh3_52_below_cutoff() -> None:
    r = _mh({"age": "2 years", "ANC": "1.0 x10^9/L", "fibrinogen": "120 mg/dL", "splenomegaly": False,
             "PLT": "90 x10^9/L", "Hb": "9.0 g/dL"})  # fmt: skip
    assert (r.total, r.favours) == (52, "MAS")


def test_mh4_all_boundaries_inclusive() -> None:
    r = _mh({"age": "1.6 years", "ANC": "1.4 x10^9/L", "fibrinogen": "131 mg/dL", "splenomegaly": False,
             "PLT": "78 x10^9/L", "Hb": "8.3 g/dL"})  # fmt: skip
    assert (r.total, r.favours) == (111, "primary HLH")


def test_mh4_in_other_units() -> None:
    r = _mh({"age": "19.2 months", "ANC": "1400 /µL", "fibrinogen": "1.31 g/L", "splenomegaly": False,
             "PLT": "78000 /µL", "Hb": "83 g/L"})  # fmt: skip
    assert r.total == 111


@pytest.mark.parametrize(
    ("analyte", "value"),
    [("age", "1.7 years"), ("ANC", "1.5 x10^9/L"), ("fibrinogen", "132 mg/dL"), ("PLT", "79 x10^9/L"),
     ("Hb", "8.4 g/dL")],
)  # fmt: skip
def test_just_above_each_boundary_scores_zero(analyte: str, value: str) -> None:
    (item,) = [i for i in _mh({analyte: value}).items if i.value is not None]
    assert (item.points, item.met) == (0, False)


def test_cutoff_60() -> None:
    # 37 + 15 + 11 = 63 >= 60; 37 + 11 + 11 = 59 < 60
    assert _mh({"age": "1 year", "fibrinogen": "100 mg/dL", "PLT": "50 x10^9/L", "ANC": "3 x10^9/L",
                "splenomegaly": False, "Hb": "10 g/dL"}).favours == "primary HLH"  # fmt: skip
    assert _mh({"age": "1 year", "fibrinogen": "200 mg/dL", "PLT": "50 x10^9/L", "ANC": "3 x10^9/L",
                "splenomegaly": False, "Hb": "8 g/dL"}).total == 59  # fmt: skip


def test_missing_items_give_bounds() -> None:
    r = _mh({"age": "8 years", "ANC": "5 x10^9/L", "splenomegaly": True})
    assert (r.lower, r.upper, r.favours) == (
        12,
        49,
        "MAS",
    )  # cannot reach 60 even with the missing items
    r = _mh({"ANC": "0.5 x10^9/L", "splenomegaly": True})
    assert (r.lower, r.upper, r.favours) == (49, 123, None)
    assert set(r.missing) == {"Age at onset", "Fibrinogen", "Platelets", "Haemoglobin"}
