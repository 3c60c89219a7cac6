"""HLH-2004 (Henter 2007): spec §2 worked examples, primary operators, infant Hb rule, pending tests."""

from __future__ import annotations

from decimal import Decimal as D

import pytest

from hemoscan.labs import parse_panel
from hemoscan.scores.hlh2004 import hlh2004


def _hlh(entries: dict, marrow: bool | None = None, **kwargs):
    return hlh2004(parse_panel("T", entries), marrow, **kwargs)


def _item(result, prefix: str):
    return next(i for i in result.items if i.name.startswith(prefix))


H1 = {"age": "3 years", "fever": True, "splenomegaly": True, "Hb": "85 g/L", "PLT": "80 x10^9/L",
      "ANC": "1.5 x10^9/L", "TG": "2.5 mmol/L", "fibrinogen": "1.2 g/L", "marrow_hemophagocytosis": False,
      "ferritin": "600 ng/mL"}  # fmt: skip


def test_h1_meets_with_5_of_8() -> None:
    r = _hlh(H1)
    assert (r.criteria_met, r.result, r.met_by) == (5, "met", "5 of 8 criteria")
    assert _item(r, "3.").met is True and _item(r, "4.").met is True and _item(r, "5.").met is False
    assert r.criteria_unknown == 2 and {n.split(" (")[0] for n in r.unknown} == {
        "6. Low or absent NK-cell activity",
        "8. Soluble CD25",
    }


def test_h2_boundaries_not_met_yet_undecided() -> None:
    r = _hlh({"age": "40 years", "fever": True, "splenomegaly": True, "Hb": "90 g/L", "PLT": "99 x10^9/L",
              "ANC": "1.0 x10^9/L", "fibrinogen": "1.5 g/L", "ferritin": "500 µg/L",
              "marrow_hemophagocytosis": False, "NK activity low": "pending", "sIL-2R": "pending"})  # fmt: skip
    hb, plt, anc = _item(r, "3.").parts
    assert (hb.met, plt.met, anc.met) == (False, True, False) and _item(r, "3.").met is False
    assert _item(r, "4.").met is True and _item(r, "7.").met is True
    assert (r.criteria_met, r.criteria_unknown, r.result) == (4, 2, "undecided")
    assert _item(r, "6.").status == "pending" and _item(r, "8.").status == "pending"


def test_h3_infant_hemoglobin_rule() -> None:
    counts = {"Hb": "95 g/L", "PLT": "150 x10^9/L", "ANC": "0.8 x10^9/L"}
    infant = _item(_hlh({**counts, "age": "3 weeks"}), "3.")
    assert (
        infant.met is True and infant.parts[0].met is True and "infant rule" in infant.parts[0].note
    )
    older = _item(_hlh({**counts, "age": "6 weeks"}), "3.")
    assert older.met is False and older.parts[0].met is False
    assert _item(_hlh({**counts, "age": "27 days"}), "3.").met is True
    assert _item(_hlh({**counts, "age": "28 days"}), "3.").met is False  # 4 weeks is not < 4 weeks
    assert _item(_hlh({"Hb": "99 g/L", "age": "1 week"}), "3.").parts[0].met is True
    assert _item(_hlh({"Hb": "100 g/L", "age": "1 week"}), "3.").parts[0].met is False


def test_infant_rule_without_age_leaves_90_to_99_unknown() -> None:
    hb = _item(_hlh({"Hb": "95 g/L"}), "3.").parts[0]
    assert hb.met is None and hb.status == "missing" and "age needed" in hb.note
    assert _item(_hlh({"Hb": "89 g/L"}), "3.").parts[0].met is True
    assert _item(_hlh({"Hb": "100 g/L"}), "3.").parts[0].met is False


def test_h4_molecular_path() -> None:
    r = _hlh({"molecular_diagnosis": True, "fever": True, "splenomegaly": True})
    assert (r.result, r.met_by, r.criteria_met) == ("met", "molecular diagnosis", 2)


def test_h5_composite() -> None:
    r = _hlh({"fever": True, "splenomegaly": True, "Hb": "85 g/L", "PLT": "60 x10^9/L", "TG": "2.8 mmol/L",
              "fibrinogen": "1.8 g/L", "marrow_hemophagocytosis": True, "ferritin": "8000 ng/mL"})  # fmt: skip
    assert (r.criteria_met, r.result) == (5, "met") and _item(r, "4.").met is False


def test_image_suggestion_feeds_criterion_5_only_without_pathologist_value() -> None:
    labs = {k: v for k, v in H1.items() if k != "marrow_hemophagocytosis"}
    labs["ferritin"] = "400 ng/mL"
    assert _hlh(labs).criteria_met == 4
    suggested = _hlh(labs, marrow=True)
    assert suggested.criteria_met == 5 and suggested.marrow_source.startswith("image suggestion")
    assert _hlh({**labs, "marrow_hemophagocytosis": False}, marrow=True).criteria_met == 4


def test_not_met_when_even_unknowns_cannot_reach_5() -> None:
    r = _hlh(
        {
            "fever": True,
            "splenomegaly": False,
            "Hb": "120 g/L",
            "PLT": "200 x10^9/L",
            "ANC": "3 x10^9/L",
            "TG": "1 mmol/L",
            "fibrinogen": "3 g/L",
            "marrow_hemophagocytosis": False,
            "ferritin": "300 ng/mL",
        }
    )
    assert (r.criteria_met, r.criteria_unknown, r.result) == (1, 2, "not met")


def test_molecular_pending_keeps_it_undecided() -> None:
    assert _hlh({"fever": True, "molecular_diagnosis": "pending", "splenomegaly": False, "Hb": "120 g/L",
                 "PLT": "200 x10^9/L", "ANC": "3 x10^9/L", "TG": "1 mmol/L", "fibrinogen": "3 g/L",
                 "marrow_hemophagocytosis": False, "ferritin": "300 ng/mL", "nk_activity_low": False,
                 "scd25": "100 U/mL"}).result == "undecided"  # fmt: skip


@pytest.mark.parametrize(
    ("entries", "prefix", "met"),
    [
        ({"PLT": "99 x10^9/L", "ANC": "0.9 x10^9/L"}, "3.", True),
        ({"PLT": "100 x10^9/L", "ANC": "0.9 x10^9/L", "Hb": "120 g/L"}, "3.", False),
        ({"PLT": "99000 /µL", "ANC": "999 /µL"}, "3.", True),
        ({"PLT": "99 x10^9/L", "ANC": "1000 /µL", "Hb": "9.0 g/dL", "age": "2 years"}, "3.", False),
        ({"PLT": "99 x10^9/L", "Hb": "8.9 g/dL"}, "3.", True),
        ({"TG": "3.0 mmol/L", "fibrinogen": "3 g/L"}, "4.", True),
        ({"TG": "2.99 mmol/L", "fibrinogen": "3 g/L"}, "4.", False),
        ({"TG": "265 mg/dL", "fibrinogen": "3 g/L"}, "4.", True),  # 2.99 mmol/L, but meets the mg/dL wording
        ({"TG": "264 mg/dL", "fibrinogen": "3 g/L"}, "4.", False),
        ({"TG": "1 mmol/L", "fibrinogen": "1.5 g/L"}, "4.", True),
        ({"TG": "1 mmol/L", "fibrinogen": "150 mg/dL"}, "4.", True),
        ({"TG": "1 mmol/L", "fibrinogen": "1.51 g/L"}, "4.", False),
        ({"ferritin": "500 ng/mL"}, "7.", True),
        ({"ferritin": "499 µg/L"}, "7.", False),
        ({"scd25": "2400 U/mL"}, "8.", True),
        ({"scd25": "2399 U/mL"}, "8.", False),
        ({"NK activity low": True}, "6.", True),
        ({"fever": False}, "1.", False),
    ],
)  # fmt: skip
def test_primary_operators_at_each_boundary(entries: dict, prefix: str, met: bool) -> None:
    assert _item(_hlh(entries), prefix).met is met


def test_tg_rounding_choice_is_documented_in_the_item() -> None:
    lipids = _item(_hlh({"TG": "265 mg/dL"}), "4.")
    tg = lipids.parts[0]
    assert (tg.value, tg.unit, tg.threshold, tg.met) == (D(265), "mg/dL", "≥ 265 mg/dL", True)
    assert "reported unit" in tg.note
    assert lipids.met is True  # either one suffices, fibrinogen unknown


def test_criterion_4_unknown_when_only_a_normal_value_is_known() -> None:
    item = _item(_hlh({"TG": "1 mmol/L"}), "4.")
    assert item.met is None and item.status == "missing"


def test_fever_threshold_is_configurable_and_off_by_default() -> None:
    entries = {"temperature": "38.6 °C"}
    assert _item(_hlh(entries), "1.").met is None
    item = _item(_hlh(entries, fever_threshold_c=D("38.5")), "1.")
    assert item.met is True and "38.5" in item.note
    assert _item(_hlh({"temperature": "38.4 °C"}, fever_threshold_c=D("38.5")), "1.").met is False
    assert (
        _item(_hlh({"temperature": "40 °C", "fever": False}, fever_threshold_c=D("38.5")), "1.").met
        is False
    )


def test_scd25_pg_per_ml_is_not_compared_without_a_lab_cutoff() -> None:
    item = _item(_hlh({"sIL-2R": "5000 pg/mL"}), "8.")
    assert item.met is None and "no fixed conversion" in item.note
    assert _item(_hlh({"sIL-2R": "5000 pg/mL"}, scd25_cutoff="3000 pg/mL"), "8.").met is True


def test_scd25_lab_cutoff_override() -> None:
    item = _item(_hlh({"scd25": "2000 U/mL"}, scd25_cutoff="1800 U/mL"), "8.")
    assert item.met is True and "laboratory cut-off" in item.note


def test_no_evidence_of_malignancy_is_reported_not_counted() -> None:
    assert "no evidence of malignancy" in _item(_hlh(H1), "5.").note
    assert len([i for i in _hlh(H1).items if i.name[0].isdigit()]) == 8


def test_to_dict_keys() -> None:
    d = _hlh(H1).to_dict()
    assert (d["criteria_met"], d["result"]) == (5, "met") and "doi:10.1002/pbc.21039" in d[
        "citation"
    ]
