"""HScore (Fardet 2014): spec §1 worked examples, every band boundary, units, probability, missing data."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from hemoscan.labs import parse_panel
from hemoscan.scores.hscore import CUTOFF, PROBABILITY_TABLE, hscore, probability

NONE = {"immunosuppression": False, "temperature": "37 °C", "hepatomegaly": False, "splenomegaly": False,
        "Hb": "14 g/dL", "WBC": "7 x10^9/L", "PLT": "250 x10^9/L", "ferritin": "100 ng/mL",
        "TG": "1.0 mmol/L", "fibrinogen": "4 g/L", "AST": "20 U/L", "marrow_hemophagocytosis": False}  # fmt: skip


def _score(**changes: object):
    entries = {**NONE, **changes}
    return hscore(parse_panel("T", {k: v for k, v in entries.items() if v is not None}))


def _points(result, name: str) -> int:
    return next(i.points for i in result.items if i.name.startswith(name))


def test_hs1_sophiewell_274() -> None:
    r = _score(temperature="40.0 °C", hepatomegaly=True, splenomegaly=True, Hb="8 g/dL", PLT="90 x10^9/L",
               ferritin="4000 ng/mL", TG="3.0 mmol/L", fibrinogen="2.0 g/L", AST="100 U/L",
               marrow_hemophagocytosis=True)  # fmt: skip
    assert [i.points for i in r.items] == [0, 49, 38, 24, 35, 44, 30, 19, 35]
    assert (r.total, r.lower, r.upper, r.probability, r.positive, r.missing) == (
        274,
        274,
        274,
        ">99%",
        True,
        (),
    )


def test_hs2_fahrenheit_142() -> None:
    r = _score(temperature="102.5 °F", ferritin="3000 ng/mL", TG="3 mmol/L", fibrinogen="2.5 g/L")
    assert r.total == 142 and _points(r, "Temperature") == 33 and _points(r, "Fibrinogen") == 30
    assert (r.probability, r.probability_percent, r.positive) == ("17.8%", D("17.8"), False)


def test_hs2_variant_gdl5_39c_and_tg_in_mg_dl() -> None:
    r = _score(temperature="39 °C", ferritin="3000 ng/mL", TG="300 mg/dL", fibrinogen="2.5 g/L")
    assert r.total == 142 and _points(r, "Triglycerides") == 44


def test_hs3_cutoff_169_is_positive() -> None:
    r = _score(immunosuppression=True, temperature="40 °C", hepatomegaly=True, splenomegaly=True,
               Hb="8 g/dL", WBC="3 x10^9/L", PLT="50 x10^9/L", fibrinogen="2.0 g/L")  # fmt: skip
    assert (r.total, r.positive, r.probability) == (169, True, "52.6%")
    assert CUTOFF == 169


def test_hs4_gdl13_167_negative() -> None:
    r = _score(immunosuppression=True, temperature="39 °C", hepatomegaly=True, splenomegaly=True, Hb="8 g/dL",
               PLT="50 x10^9/L", marrow_hemophagocytosis=True, AST="50 U/L", ferritin="1000 ng/mL",
               TG="1 mmol/L", fibrinogen="5 g/L")  # fmt: skip
    assert (r.total, r.positive, r.probability) == (167, False, "49.8%")


def test_hs5_composite_with_and_without_marrow() -> None:
    labs = dict(temperature="39.0 °C", splenomegaly=True, Hb="8.5 g/dL", PLT="60 x10^9/L", ferritin="8000 ng/mL",
                TG="2.8 mmol/L", fibrinogen="1.8 g/L", AST="85 U/L")  # fmt: skip
    with_marrow = _score(**labs, marrow_hemophagocytosis=True)
    assert (with_marrow.total, with_marrow.probability, with_marrow.positive) == (258, ">99%", True)
    without = _score(**labs)
    assert (without.total, without.probability) == (223, "96.6%")


def test_hs6_one_cytopenia_scores_zero() -> None:
    assert _points(_score(PLT="90 x10^9/L"), "Cytopenias") == 0


def test_hs7_unit_edges() -> None:
    assert _points(_score(TG="133 mg/dL"), "Triglycerides") == 44
    assert _points(_score(TG="132 mg/dL"), "Triglycerides") == 0
    assert (
        _points(_score(temperature="101.1 °F"), "Temperature") == 0
    )  # 38.39 °C, not MDCalc's 101.1 band
    assert _points(_score(temperature="101.12 °F"), "Temperature") == 33  # exactly 38.4 °C
    assert _points(_score(TG="354 mg/dL"), "Triglycerides") == 44  # 3.997 mmol/L
    assert _points(_score(TG="355 mg/dL"), "Triglycerides") == 64


def test_extremes() -> None:
    top = _score(immunosuppression=True, temperature="41 °C", hepatomegaly=True, splenomegaly=True, Hb="7 g/dL",
                 WBC="1 x10^9/L", PLT="20 x10^9/L", ferritin="20000 ng/mL", TG="5 mmol/L", fibrinogen="1 g/L",
                 AST="300 U/L", marrow_hemophagocytosis=True)  # fmt: skip
    assert top.total == 337 and _score().total == 0 and _score().probability == "<1%"


@pytest.mark.parametrize(
    ("item", "analyte", "value", "points"),
    [
        ("Temperature", "temperature", "38.3 °C", 0), ("Temperature", "temperature", "38.4 °C", 33),
        ("Temperature", "temperature", "38.5 °C", 33), ("Temperature", "temperature", "39.4 °C", 33),
        ("Temperature", "temperature", "39.5 °C", 49),
        ("Ferritin", "ferritin", "1999 ng/mL", 0), ("Ferritin", "ferritin", "2000 ng/mL", 35),
        ("Ferritin", "ferritin", "6000 µg/L", 35), ("Ferritin", "ferritin", "6001 ng/mL", 50),
        ("Triglycerides", "TG", "1.49 mmol/L", 0), ("Triglycerides", "TG", "1.5 mmol/L", 44),
        ("Triglycerides", "TG", "4.0 mmol/L", 44), ("Triglycerides", "TG", "4.01 mmol/L", 64),
        ("Triglycerides", "TG", "1.33 g/L", 44),
        ("Fibrinogen", "fibrinogen", "2.49 g/L", 30), ("Fibrinogen", "fibrinogen", "2.5 g/L", 30),
        ("Fibrinogen", "fibrinogen", "2.51 g/L", 0), ("Fibrinogen", "fibrinogen", "250 mg/dL", 30),
        ("Fibrinogen", "fibrinogen", "251 mg/dL", 0),
        ("AST", "AST", "29 U/L", 0), ("AST", "AST", "30 U/L", 19), ("AST", "AST", "31 U/L", 19),
        ("AST", "AST", "0.5 µkat/L", 19),
    ],
)  # fmt: skip
def test_band_boundaries(item: str, analyte: str, value: str, points: int) -> None:
    assert _points(_score(**{analyte: value}), item) == points


@pytest.mark.parametrize(
    ("changes", "lineages"),
    [
        ({"Hb": "9.2 g/dL", "PLT": "110 x10^9/L"}, 2), ({"Hb": "9.3 g/dL", "PLT": "110 x10^9/L"}, 1),
        ({"Hb": "92 g/L", "WBC": "5.0 x10^9/L"}, 2), ({"Hb": "92 g/L", "WBC": "5.1 x10^9/L"}, 1),
        ({"WBC": "5000 /µL", "PLT": "110000 /µL"}, 2), ({"WBC": "5000 /µL", "PLT": "111000 /µL"}, 1),
        ({"Hb": "9 g/dL", "WBC": "4 x10^9/L", "PLT": "100 x10^9/L"}, 3),
    ],
)  # fmt: skip
def test_cytopenia_boundaries(changes: dict, lineages: int) -> None:
    item = next(i for i in _score(**changes).items if i.name == "Cytopenias")
    assert item.value == lineages and item.points == (0, 0, 24, 34)[lineages]


def test_organomegaly() -> None:
    assert _points(_score(hepatomegaly=True), "Organomegaly") == 23
    assert _points(_score(splenomegaly=True), "Organomegaly") == 23
    assert _points(_score(hepatomegaly=True, splenomegaly=True), "Organomegaly") == 38


@pytest.mark.parametrize(
    ("total", "label"),
    [(0, "<1%"), (90, "<1%"), (99, "<1%"), (142, "17.8%"), (169, "52.6%"), (165, "47%"), (239, "98.9%"),
     (240, "99%"), (245, "99%"), (249, "99%"), (250, ">99%"), (337, ">99%")],
)  # fmt: skip
def test_probability_interpolates_the_paper_table(total: int, label: str) -> None:
    assert probability(total)[0] == label


def test_probability_hits_every_table_point() -> None:
    for score, percent in PROBABILITY_TABLE:
        assert probability(score) == (f"{percent}%", D(percent))


def test_missing_items_give_bounds_and_no_call_when_they_straddle() -> None:
    r = _score(temperature=None, AST=None, marrow_hemophagocytosis=None, Hb=None, ferritin="8000 ng/mL",
               splenomegaly=True, PLT="50 x10^9/L")  # fmt: skip
    assert (r.lower, r.upper) == (73, 73 + 49 + 19 + 35 + 24)
    assert r.positive is None and r.total == r.lower
    assert set(r.missing) == {"Temperature", "AST (SGOT)", "Hemophagocytosis on bone-marrow aspirate",
                              "Cytopenias: Haemoglobin"}  # fmt: skip
    assert r.probability == "<1% to 88%" and r.probability_percent is None
    assert "marrow item's 35 points" in r.note
    cyto = next(i for i in r.items if i.name == "Cytopenias")
    assert (cyto.status, cyto.points, cyto.points_lower, cyto.points_upper) == (
        "missing",
        None,
        0,
        24,
    )


def test_missing_items_still_called_when_both_bounds_agree() -> None:
    high = _score(marrow_hemophagocytosis=None, temperature="40 °C", hepatomegaly=True, splenomegaly=True,
                  Hb="8 g/dL", PLT="50 x10^9/L", ferritin="8000 ng/mL", TG="3 mmol/L")  # fmt: skip
    assert high.lower >= 169 and high.positive is True
    low = _score(marrow_hemophagocytosis=None, immunosuppression=None)
    assert (low.lower, low.upper, low.positive) == (0, 53, False)


def test_marrow_item_pathologist_value_wins_over_image_suggestion() -> None:
    panel = parse_panel("T", {"marrow_hemophagocytosis": False})
    r = hscore(panel, marrow_hemophagocytosis=True)
    assert _points(r, "Hemophagocytosis") == 0 and r.marrow_source.startswith("pathologist")
    suggested = hscore(parse_panel("T", {}), marrow_hemophagocytosis=True)
    assert _points(suggested, "Hemophagocytosis") == 35 and suggested.marrow_source.startswith(
        "image suggestion"
    )
    assert hscore(parse_panel("T", {})).marrow_source == ""


def test_items_carry_value_unit_threshold_and_citation() -> None:
    item = next(i for i in _score(TG="133 mg/dL").items if i.name == "Triglycerides")
    assert (
        item.unit == "mmol/L"
        and round(item.value, 3) == D("1.502")
        and "1.5-4.0: 44" in item.threshold
    )
    assert item.citation == "Fardet 2014, Table 3" and item.note == "reported 133 mg/dL"
    d = _score().to_dict()
    assert {"total", "lower", "upper", "probability", "positive", "items", "citation"} <= d.keys()
    assert "doi:10.1002/art.38690" in d["citation"]
