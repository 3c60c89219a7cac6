"""MS score (Minoia 2019): spec §4 examples in exact decimals, the -2.1 boundary and the fibrinogen unit trap."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from hemoscan.errors import LabValueError
from hemoscan.labs import parse_panel
from hemoscan.scores.ms_score import CUTOFF, ms_score

NO_CLINICAL = {"cns_involvement": False, "hemorrhage": False, "active_arthritis": False}
MS3 = {
    **NO_CLINICAL,
    "PLT": "300 x10^9/L",
    "LDH": "300 U/L",
    "fibrinogen": "450 mg/dL",
    "ferritin": "3000 ng/mL",
}


def _ms(entries: dict, **kwargs):
    return ms_score(parse_panel("T", entries), **kwargs)


def test_ms1_negative() -> None:
    r = _ms({**NO_CLINICAL, "active_arthritis": True, "PLT": "250 x10^9/L", "LDH": "400 U/L",
             "fibrinogen": "450 mg/dL", "ferritin": "1500 ng/mL"})  # fmt: skip
    assert (
        r.value == D("-3.30") and r.positive is False and (r.lower, r.upper) == (r.value, r.value)
    )
    assert [i.points for i in r.items] == [
        0,
        0,
        D("-1.30"),
        D("-0.750"),
        D("0.400"),
        D("-1.800"),
        D("0.1500"),
    ]


def test_ms2_positive() -> None:
    r = _ms({**NO_CLINICAL, "cns_involvement": True, "PLT": "120 x10^9/L", "LDH": "1200 U/L",
             "fibrinogen": "180 mg/dL", "ferritin": "8000 ng/mL"})  # fmt: skip
    assert r.value == D("3.36") and r.positive is True


def test_ms3_exactly_at_cutoff_is_positive_where_floats_fail() -> None:
    r = _ms({**NO_CLINICAL, "PLT": "300 x10^9/L", "LDH": "300 U/L", "fibrinogen": "450 mg/dL",
             "ferritin": "3000 ng/mL"})  # fmt: skip
    assert r.value == D("-2.1") == CUTOFF and r.positive is True
    naive = -0.003 * 300 + 0.001 * 300 - 0.004 * 450 + 0.0001 * 3000
    assert naive < -2.1  # the float trap the Decimal arithmetic avoids


def test_ms3_second_exact_boundary_case() -> None:
    r = _ms({**NO_CLINICAL, "active_arthritis": True, "PLT": "300 x10^9/L", "LDH": "300 U/L",
             "fibrinogen": "100 mg/dL", "ferritin": "2000 ng/mL"})  # fmt: skip
    assert r.value == D("-2.10") and r.positive is True


def test_just_below_and_above_the_cutoff() -> None:
    base = {**NO_CLINICAL, "PLT": "300 x10^9/L", "LDH": "300 U/L", "fibrinogen": "450 mg/dL"}
    assert _ms({**base, "ferritin": "2990 ng/mL"}).positive is False  # -2.101
    assert _ms({**base, "ferritin": "3010 ng/mL"}).positive is True  # -2.099


def test_si_units_are_converted_exactly() -> None:
    r = _ms(
        {
            **NO_CLINICAL,
            "PLT": "300000 /µL",
            "LDH": "5 µkat/L",
            "fibrinogen": "4.5 g/L",
            "ferritin": "3000 µg/L",
        }
    )
    assert r.value == D("-2.1") and r.positive is True


def test_ms4_fibrinogen_in_g_per_l_labelled_mg_per_dl_is_rejected() -> None:
    with pytest.raises(
        LabValueError, match=r"sample 'T', fibrinogen: 4.5 mg/dL .* did you mean 4.5 g/L\?"
    ):
        _ms({**NO_CLINICAL, "active_arthritis": True, "fibrinogen": "4.5 mg/dL"})
    r = _ms({**NO_CLINICAL, "active_arthritis": True, "PLT": "250 x10^9/L", "LDH": "400 U/L",
             "fibrinogen": "4.5 g/L", "ferritin": "1500 ng/mL"})  # fmt: skip
    assert r.value == D("-3.3") and r.positive is False  # not the falsely positive -1.518


def test_missing_yes_no_items_give_bounds() -> None:
    r = _ms(
        {
            "PLT": "300 x10^9/L",
            "LDH": "300 U/L",
            "fibrinogen": "450 mg/dL",
            "ferritin": "3000 ng/mL",
        }
    )
    assert r.value == D("-2.1") and r.lower == D("-3.4") and r.upper == D("1.88")
    assert r.positive is None
    assert set(r.missing) == {"CNS involvement", "Haemorrhagic manifestations", "Active arthritis"}
    decided = _ms({"cns_involvement": True, "PLT": "300 x10^9/L", "LDH": "300 U/L", "fibrinogen": "450 mg/dL",
                   "ferritin": "3000 ng/mL"})  # fmt: skip
    assert decided.lower == D("-0.96") and decided.positive is True


def test_missing_lab_value_is_not_computable() -> None:
    r = _ms(
        {**NO_CLINICAL, "PLT": "300 x10^9/L", "fibrinogen": "450 mg/dL", "ferritin": "3000 ng/mL"}
    )
    assert (r.value, r.positive) == (None, None) and r.reason == "not computable: missing LDH"


def test_cutoff_is_configurable_and_applicability_reported() -> None:
    entries = MS3
    assert _ms(entries, cutoff=D("-1.74")).positive is False
    assert _ms({**entries, "fever": True, "sjia": True}).applicable is True
    afebrile = _ms({**entries, "fever": False, "sjia": True})
    assert afebrile.applicable is False and "febrile" in afebrile.reason


def test_to_dict_numbers() -> None:
    d = _ms(MS3).to_dict()
    assert d["value"] == -2.1 and d["positive"] is True and d["cutoff"] == -2.1
