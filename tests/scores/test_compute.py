"""compute_all: every score of a panel, with and without the image suggestion, as JSON."""

from __future__ import annotations

import json
from decimal import Decimal

from hemoscan.labs import parse_panel
from hemoscan.scores import ScoreSettings, compute_all

HS5 = {"temperature": "39.0 °C", "splenomegaly": True, "hepatomegaly": False, "immunosuppression": False,
       "Hb": "8.5 g/dL", "PLT": "60 x10^9/L", "WBC": "6 x10^9/L", "ferritin": "8000 ng/mL", "TG": "2.8 mmol/L",
       "fibrinogen": "1.8 g/L", "AST": "85 U/L", "fever": True}  # fmt: skip

REQUIRED_KEYS = {
    "hscore": {"total", "lower", "upper", "probability", "positive"},
    "hlh2004": {"criteria_met", "result"},
    "mas2016": {"applicable", "classified"},
    "ms_score": {"value", "positive"},
    "mh_score": {"total"},
    "ferritin_esr": {"ratio"},
}


def test_with_and_without_the_image_suggestion() -> None:
    panel = parse_panel("HS5", HS5)
    with_image, without = compute_all(panel, marrow_hemophagocytosis=True), compute_all(panel)
    assert (with_image.hscore.total, without.hscore.total) == (258, 223)
    assert (with_image.hlh2004.criteria_met, without.hlh2004.criteria_met) == (5, 4)
    assert (with_image.hlh2004.result, without.hlh2004.result) == ("met", "undecided")
    assert (
        with_image.marrow_source.startswith("image suggestion")
        and without.marrow_hemophagocytosis is None
    )


def test_pathologist_value_wins() -> None:
    report = compute_all(
        parse_panel("P", {**HS5, "marrow_hemophagocytosis": False}), marrow_hemophagocytosis=True
    )
    assert report.hscore.total == 223 and report.marrow_hemophagocytosis is False
    assert report.marrow_source.startswith("pathologist")


def test_to_dict_has_the_required_keys_and_is_json() -> None:
    d = compute_all(parse_panel("HS5", HS5), True).to_dict()
    assert d["sample"] == "HS5" and d["marrow_hemophagocytosis"]["value"] is True
    for score, keys in REQUIRED_KEYS.items():
        assert keys <= d[score].keys(), score
    assert d["hscore"]["total"] == 258 and d["hscore"]["positive"] is True
    assert d["ms_score"]["value"] is None and "not computable" in d["ms_score"]["reason"]
    assert d["ferritin_esr"]["ratio"] is None and "missing ESR" in d["ferritin_esr"]["reason"]
    assert json.loads(json.dumps(d)) == d


def test_settings_are_passed_on() -> None:
    panel = parse_panel("S", {"temperature": "39 °C", "sjia": True})
    assert compute_all(panel).mas2016.applicable is None
    assert (
        compute_all(
            panel, settings=ScoreSettings(fever_threshold_c=Decimal("38.5"))
        ).mas2016.applicable
        is True
    )
