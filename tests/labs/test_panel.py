"""Parsing values, flags and aliases into a LabPanel; every bad input names sample, analyte, problem."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from hemoscan.errors import HemoscanError, LabValueError
from hemoscan.labs import parse_panel, resolve_analyte


def _one(name: str, raw: object):
    return parse_panel("S1", {name: raw}).values[resolve_analyte(name).name]


@pytest.mark.parametrize(
    ("alias", "canonical"),
    [
        ("WBC", "leukocytes"), ("leucocytes", "leukocytes"), ("PLT", "platelets"), ("Hb", "hemoglobin"),
        ("Hgb", "hemoglobin"), ("haemoglobin", "hemoglobin"), ("TG", "triglycerides"), ("SGOT", "ast"),
        ("ASAT", "ast"), ("AST", "ast"), ("sIL-2R", "scd25"), ("sIL2R", "scd25"), ("sCD25", "scd25"),
        ("Temp", "temperature"), ("Tmax", "temperature"), ("ANC", "neutrophils"), ("LDH", "ldh"),
        ("ESR", "esr"), ("Fibrinogen", "fibrinogen"), ("NK activity low", "nk_activity_low"),
        ("nk_activity_low", "nk_activity_low"), ("sJIA", "sjia"), ("CNS", "cns_involvement"),
        ("bleeding", "hemorrhage"), ("marrow-hemophagocytosis", "marrow_hemophagocytosis"),
    ],
)  # fmt: skip
def test_aliases(alias: str, canonical: str) -> None:
    analyte = resolve_analyte(alias)
    assert analyte is not None and analyte.name == canonical


def test_value_forms_and_canonical_units() -> None:
    panel = parse_panel("S1", {
        "ferritin": "3000 ng/mL", "TG": {"value": 133, "unit": "mg/dL"},
        "fibrinogen": {"value": "2.5", "unit": "g/L"}, "PLT": "110000 /µL", "Hb": "92 g/L",
        "temperature": "102.5 °F", "AST": "0.8 µkat/L", "age": "3 weeks",
    })  # fmt: skip
    assert panel.quantity("ferritin", "µg/L") == D(3000)
    tg = panel.value("triglycerides")
    assert (tg.reported_value, tg.reported_unit, tg.unit) == (D(133), "mg/dL", "mmol/L")
    assert round(tg.value, 3) == D("1.502") and panel.quantity("triglycerides", "mg/dL") == D(133)
    assert panel.quantity("fibrinogen", "mg/dL") == D(250)
    assert panel.quantity("platelets", "×10⁹/L") == D(110)
    assert panel.quantity("hemoglobin", "g/dL") == D("9.2")
    assert round(panel.quantity("temperature", "°C"), 2) == D("39.17")
    assert panel.quantity("ast", "U/L") == D(48)
    assert panel.quantity("age", "weeks") == D(3)
    assert str(tg) == "133 mg/dL" and tg.reported == "133 mg/dL"
    assert panel.value("ferritin").reported == "3000 ng/mL"


def test_json_floats_stay_exact() -> None:
    assert _one("fibrinogen", {"value": 1.8, "unit": "g/L"}).value == D("1.8")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [(True, True), (False, False), ("yes", True), ("No", False), ("present", True), ("absent", False),
     ("positive", True), ("negative", False), (1, True), (0, False), ("TRUE", True), ("n", False)],
)  # fmt: skip
def test_flags(raw: object, expected: bool) -> None:
    assert _one("splenomegaly", raw) is expected


def test_pending_and_not_available() -> None:
    panel = parse_panel("S1", {"sIL-2R": "pending", "NK activity low": "Pending", "ferritin": "", "esr": "n/a",
                               "ldh": None, "fever": "not done"})  # fmt: skip
    assert panel.pending == {"scd25", "nk_activity_low"}
    assert panel.values == {}
    assert panel.is_pending("scd25") and not panel.is_pending("ferritin")
    assert panel.quantity("ferritin", "ng/mL") is None and panel.flag("fever") is None


def test_scd25_in_pg_per_ml_is_flagged_not_converted() -> None:
    v = _one("sIL-2R", "5000 pg/mL")
    assert v.unit == "pg/mL" and v.value == D(5000) and "no fixed conversion" in v.flag
    assert _one("scd25", "3000 U/mL").flag == ""


def _error(entries: dict) -> str:
    with pytest.raises(LabValueError) as info:
        parse_panel("patient 7", entries, "labs.json")
    message = str(info.value)
    assert message.startswith("labs.json: sample 'patient 7', ")
    assert isinstance(info.value, HemoscanError)
    return message


@pytest.mark.parametrize(
    ("entries", "fragments"),
    [
        ({"ferritin": "3000 ng/dL"}, ["ferritin", "'ng/dL' is an unknown unit", "accepted: ng/mL, µg/L"]),
        ({"ferritin": "3000"}, ["ferritin", "has no unit", "accepted: ng/mL, µg/L"]),
        ({"ferritin": 3000}, ["ferritin", "has no unit"]),
        ({"ferritin": {"value": 3000}}, ["ferritin", "has no unit"]),
        ({"ferritin": "3000 mmol/L"}, ["ferritin", "'mmol/L' is a unit of", "not of ferritin"]),
        ({"ferritin": "6700 pmol/L"}, ["ferritin", "pmol/L is not accepted", "2.247"]),
        ({"fibrinogen": "10 µmol/L"}, ["fibrinogen", "µmol/L is not accepted"]),
        ({"platelets": "-5 x10^9/L"}, ["platelets", "negative value -5 ×10⁹/L is impossible"]),
        ({"WBC": "−2 /µL"}, ["leukocytes", "negative value"]),
        ({"fibrinogen": "4.5 mg/dL"}, ["fibrinogen", "4.5 mg/dL (= 0.045 g/L) is outside the plausible range",
                                       "did you mean 4.5 g/L?"]),
        ({"fibrinogen": "450 g/L"}, ["fibrinogen", "did you mean 450 mg/dL?"]),
        ({"Hb": "92 g/dL"}, ["hemoglobin", "did you mean 92 g/L?"]),
        ({"Hb": "8.5 g/L"}, ["hemoglobin", "did you mean 8.5 g/dL"]),
        ({"TG": "250 mmol/L"}, ["triglycerides", "did you mean 250 mg/dL"]),
        ({"TG": "2.5 mg/dL"}, ["triglycerides", "did you mean 2.5 mmol/L"]),
        ({"temperature": "39 °F"}, ["temperature", "did you mean 39 °C?"]),
        ({"temperature": "102 °C"}, ["temperature", "did you mean 102 °F?"]),
        ({"PLT": "150000 x10^9/L"}, ["platelets", "did you mean 150000 /µL?"]),
        ({"PLT": "110 /µL"}, ["platelets", "110 /µL (= 0.11 ×10⁹/L) is outside",
                              "did you mean 110 ×10⁹/L?"]),
        ({"WBC": "5.0 /mm3"}, ["leukocytes", "did you mean 5 ×10⁹/L?"]),
        ({"ferritin": "3,000 ng/mL"}, ["ferritin", "ambiguous", "decimal point"]),
        ({"ferritin": ">100000 ng/mL"}, ["ferritin", "censored value"]),
        ({"ferritin": "high"}, ["ferritin", "is not a number with a unit"]),
        ({"ferritin": True}, ["ferritin", "expected a number with a unit"]),
        ({"ferritin": "3000 ng/mL", "serum ferritin": "2000 ng/mL"}, ["ferritin", "given twice"]),
        ({"ferritin": {"value": "3000 µg/L", "unit": "ng/mL"}}, ["ferritin", "carries the unit 'µg/L'"]),
        ({"ferritin": {"value": 1, "unit": "ng/mL", "date": "x"}}, ["ferritin", "needs 'value' and 'unit'"]),
        ({"fever": "maybe"}, ["fever", "expected yes/no"]),
        ({"fever": {"value": "yes", "unit": "°C"}}, ["fever", "takes no unit"]),
        ({"splenomegaly": 2}, ["splenomegaly", "expected yes/no"]),
        ({"ferritine": "3000 ng/mL"}, ["ferritine", "unknown analyte name", "ferritin"]),
        ({"age": "2"}, ["age", "has no unit", "years, months, weeks, days"]),
    ],
)  # fmt: skip
def test_bad_values_name_sample_analyte_and_problem(entries: dict, fragments: list[str]) -> None:
    message = _error(entries)
    for fragment in fragments:
        assert fragment in message, message


def test_empty_sample_name_is_an_error() -> None:
    with pytest.raises(LabValueError, match="empty name"):
        parse_panel("  ", {"ferritin": "1 ng/mL"})


def test_accessors_refuse_the_wrong_kind() -> None:
    panel = parse_panel("S1", {"ferritin": "3000 ng/mL", "fever": True})
    with pytest.raises(TypeError):
        panel.flag("ferritin")
    with pytest.raises(TypeError):
        panel.value("fever")


def test_with_values_and_to_dict() -> None:
    panel = parse_panel("S1", {"ferritin": "3000 ng/mL", "fever": True})
    changed = panel.with_values(fever=None, marrow_hemophagocytosis=True)
    assert changed.flag("fever") is None and changed.flag("marrow_hemophagocytosis") is True
    assert panel.to_dict() == {"sample": "S1", "values": {"ferritin": {"value": "3000", "unit": "ng/mL"},
                                                          "fever": True}, "pending": []}  # fmt: skip
