"""2016 EULAR/ACR/PRINTO MAS classification (Ravelli 2016): spec §3 examples, operators, applicability."""

from __future__ import annotations

import pytest

from hemoscan.labs import parse_panel
from hemoscan.scores.mas2016 import mas2016

FEBRILE_SJIA = {"fever": True, "sjia": True}
C1 = {**FEBRILE_SJIA, "ferritin": "2500 ng/mL", "PLT": "150 x10^9/L", "AST": "60 U/L", "TG": "140 mg/dL",
      "fibrinogen": "400 mg/dL"}  # fmt: skip


def _mas(entries: dict):
    return mas2016(parse_panel("T", entries))


def test_c1_classified() -> None:
    r = _mas(C1)
    assert (r.applicable, r.labs_met, r.classified, r.result) == (True, 2, True, "classified")


def test_c2_ferritin_gate_is_strict() -> None:
    r = _mas({**FEBRILE_SJIA, "ferritin": "684 ng/mL", "PLT": "100 x10^9/L", "AST": "100 U/L", "TG": "300 mg/dL",
              "fibrinogen": "100 mg/dL"})  # fmt: skip
    assert (r.ferritin_met, r.labs_met, r.classified, r.result) == (
        False,
        4,
        False,
        "not classified",
    )


def test_c3_boundaries() -> None:
    r = _mas({**FEBRILE_SJIA, "ferritin": "1000 ng/mL", "PLT": "181 x10^9/L", "AST": "48 U/L", "TG": "156 mg/dL",
              "fibrinogen": "360 mg/dL"})  # fmt: skip
    assert [i.met for i in r.items[3:7]] == [True, False, False, True]
    assert r.classified is True


def test_c4_si_input() -> None:
    r = _mas({**FEBRILE_SJIA, "ferritin": "900 µg/L", "TG": "1.80 mmol/L", "fibrinogen": "3.7 g/L",
              "PLT": "250 x10^9/L", "AST": "0.9 µkat/L"})  # fmt: skip
    assert [i.met for i in r.items[3:7]] == [False, True, True, False]
    assert r.classified is True


def test_c5_afebrile_not_applicable() -> None:
    r = _mas({**C1, "fever": False})
    assert (r.applicable, r.classified, r.result, r.criteria_satisfied) == (
        False,
        None,
        "not applicable",
        True,
    )
    assert _mas({**C1, "sjia": False}).result == "not applicable"


def test_applicability_unknown() -> None:
    r = _mas({k: v for k, v in C1.items() if k != "fever"})
    assert (r.applicable, r.classified, r.result) == (None, None, "applicability unknown")


@pytest.mark.parametrize(
    ("entries", "index", "met"),
    [
        ({"ferritin": "685 ng/mL"}, 2, True), ({"ferritin": "684 ng/mL"}, 2, False),
        ({"PLT": "181000 /µL"}, 3, True), ({"PLT": "182 x10^9/L"}, 3, False),
        ({"AST": "49 U/L"}, 4, True), ({"AST": "48 U/L"}, 4, False), ({"AST": "0.8 µkat/L"}, 4, False),
        ({"TG": "157 mg/dL"}, 5, True), ({"TG": "156 mg/dL"}, 5, False), ({"TG": "1.76 mmol/L"}, 5, False),
        ({"fibrinogen": "360 mg/dL"}, 6, True), ({"fibrinogen": "3.6 g/L"}, 6, True),
        ({"fibrinogen": "361 mg/dL"}, 6, False),
    ],
)  # fmt: skip
def test_operators(entries: dict, index: int, met: bool) -> None:
    assert _mas({**FEBRILE_SJIA, **entries}).items[index].met is met


def test_missing_labs_undecided_or_decided() -> None:
    r = _mas({**FEBRILE_SJIA, "ferritin": "2000 ng/mL", "PLT": "100 x10^9/L"})
    assert (r.labs_met, r.labs_unknown, r.classified, r.result) == (1, 3, None, "undecided")
    r = _mas(
        {
            **FEBRILE_SJIA,
            "ferritin": "2000 ng/mL",
            "PLT": "100 x10^9/L",
            "AST": "20 U/L",
            "TG": "100 mg/dL",
        }
    )
    assert (r.labs_met, r.labs_unknown, r.classified) == (1, 1, None)
    r = _mas(
        {
            **FEBRILE_SJIA,
            "ferritin": "2000 ng/mL",
            "PLT": "300 x10^9/L",
            "AST": "20 U/L",
            "TG": "100 mg/dL",
        }
    )
    assert (r.labs_met, r.labs_unknown, r.classified) == (0, 1, False)  # cannot reach 2 of 4
    assert (
        _mas({**FEBRILE_SJIA, "PLT": "100 x10^9/L", "AST": "60 U/L"}).classified is None
    )  # ferritin missing
    assert _mas({**FEBRILE_SJIA, "ferritin": "500 ng/mL"}).classified is False


def test_alternative_explanation_excludes() -> None:
    r = _mas({**C1, "alternative_explanation": True})
    assert (r.classified, r.result) == (
        False,
        "not classified",
    ) and "explained by another condition" in r.reason


def test_to_dict() -> None:
    d = _mas(C1).to_dict()
    assert (d["applicable"], d["classified"]) == (True, True) and "annrheumdis-2015-208982" in d[
        "citation"
    ]
