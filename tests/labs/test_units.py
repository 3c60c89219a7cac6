"""The conversion table against the spec's §0 numbers, and unit spellings."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from hemoscan.labs import units as u


def _conv(quantity: u.Quantity, value: str, source: str, target: str) -> D:
    return u.convert(D(value), quantity.unit(source), quantity.unit(target))


@pytest.mark.parametrize(
    ("quantity", "value", "source", "target", "expected", "places"),
    [
        (u.TRIGLYCERIDES, "1.5", "mmol/L", "mg/dL", "132.855", 3),
        (u.TRIGLYCERIDES, "1.76", "mmol/L", "mg/dL", "155.883", 3),
        (u.TRIGLYCERIDES, "3.0", "mmol/L", "mg/dL", "265.71", 2),
        (u.TRIGLYCERIDES, "4.0", "mmol/L", "mg/dL", "354.28", 2),
        (u.TRIGLYCERIDES, "133", "mg/dL", "mmol/L", "1.502", 3),
        (u.TRIGLYCERIDES, "132", "mg/dL", "mmol/L", "1.490", 3),
        (u.TRIGLYCERIDES, "1.33", "g/L", "mg/dL", "133", 6),
        (u.FIBRINOGEN, "1.5", "g/L", "mg/dL", "150", 6),
        (u.FIBRINOGEN, "3.6", "g/L", "mg/dL", "360", 6),
        (u.FIBRINOGEN, "131", "mg/dL", "g/L", "1.31", 6),
        (u.CELL_COUNT, "110000", "/µL", "×10⁹/L", "110", 6),
        (u.CELL_COUNT, "5000", "/mm³", "×10⁹/L", "5", 6),
        (u.CELL_COUNT, "181", "×10³/µL", "×10⁹/L", "181", 6),
        (u.HEMOGLOBIN, "92", "g/L", "g/dL", "9.2", 6),
        (u.HEMOGLOBIN, "9.0", "g/dL", "g/L", "90", 6),
        (u.HEMOGLOBIN, "5.71", "mmol/L", "g/dL", "9.20", 2),
        (u.ENZYME_ACTIVITY, "0.5", "µkat/L", "U/L", "30", 6),
        (u.ENZYME_ACTIVITY, "0.8", "µkat/L", "U/L", "48", 6),
        (u.TEMPERATURE, "101.12", "°F", "°C", "38.4", 6),
        (u.TEMPERATURE, "102.92", "°F", "°C", "39.4", 6),
        (u.TEMPERATURE, "102.5", "°F", "°C", "39.17", 2),
        (u.TEMPERATURE, "38.4", "°C", "°F", "101.12", 6),
        (u.AGE, "19.2", "months", "years", "1.6", 6),
        (u.AGE, "28", "days", "weeks", "4", 6),
        (u.FERRITIN, "3000", "µg/L", "ng/mL", "3000", 6),
    ],
)
def test_conversions_match_spec_table(quantity, value, source, target, expected, places) -> None:
    assert round(_conv(quantity, value, source, target), places) == round(D(expected), places)


def test_exact_relations_stay_exact() -> None:
    assert _conv(u.TEMPERATURE, "101.12", "°F", "°C") == D("38.4")
    assert _conv(u.FIBRINOGEN, "4.5", "g/L", "mg/dL") == D("450")
    assert _conv(u.AGE, "28", "days", "weeks") == D("4")
    assert _conv(u.CELL_COUNT, "1000", "/µL", "×10⁹/L") == D("1")


@pytest.mark.parametrize(
    ("quantity", "spelling", "symbol"),
    [
        (u.CELL_COUNT, "×10⁹/L", "×10⁹/L"),
        (u.CELL_COUNT, "x10^9/L", "×10⁹/L"),
        (u.CELL_COUNT, "10^9/L", "×10⁹/L"),
        (u.CELL_COUNT, "10E9/L", "×10⁹/L"),
        (u.CELL_COUNT, "x 10^9 /L", "×10⁹/L"),
        (u.CELL_COUNT, "G/L", "×10⁹/L"),
        (u.CELL_COUNT, "K/uL", "×10⁹/L"),
        (u.CELL_COUNT, "×10³/µL", "×10⁹/L"),
        (u.CELL_COUNT, "10^3/mcL", "×10⁹/L"),
        (u.CELL_COUNT, "/µL", "/µL"),
        (u.CELL_COUNT, "/uL", "/µL"),
        (u.CELL_COUNT, "cells/mcL", "/µL"),
        (u.CELL_COUNT, "/mm3", "/µL"),
        (u.CELL_COUNT, "/mm³", "/µL"),
        (u.FERRITIN, "ug/L", "µg/L"),
        (u.FERRITIN, "mcg/L", "µg/L"),
        (u.FERRITIN, "μg/L", "µg/L"),  # Greek mu
        (u.FERRITIN, "NG/ML", "ng/mL"),
        (u.TEMPERATURE, "C", "°C"),
        (u.TEMPERATURE, "degC", "°C"),
        (u.TEMPERATURE, "° C", "°C"),
        (u.TEMPERATURE, "F", "°F"),
        (u.TEMPERATURE, "°F", "°F"),
        (u.ENZYME_ACTIVITY, "IU/L", "U/L"),
        (u.ENZYME_ACTIVITY, "ukat/L", "µkat/L"),
        (u.ESR, "mm/hr", "mm/h"),
        (u.AGE, "yrs", "years"),
        (u.AGE, "wk", "weeks"),
        (u.FIBRINOGEN, "G/L", "g/L"),  # grams for fibrinogen
    ],
)
def test_spellings(quantity: u.Quantity, spelling: str, symbol: str) -> None:
    found = quantity.find(spelling)
    assert found is not None and found.symbol == symbol


@pytest.mark.parametrize(
    ("quantity", "spelling"), [(u.FERRITIN, "ng/dL"), (u.CELL_COUNT, "g/dL"), (u.AGE, "m")]
)
def test_unknown_spellings_are_not_guessed(quantity: u.Quantity, spelling: str) -> None:
    assert quantity.find(spelling) is None
