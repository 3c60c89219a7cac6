"""``hemoscan scores LABS [--json]`` through Typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from hemoscan.cli.app import app
from hemoscan.cli.common import EXIT_USAGE

runner = CliRunner()


def _invoke(*args: str):
    return runner.invoke(app, ["scores", *args])


HS5 = {"sample": "HS5", "temperature": "39.0 °C", "splenomegaly": True, "hepatomegaly": False,
       "immunosuppression": False, "Hb": "8.5 g/dL", "PLT": "60 x10^9/L", "WBC": "6 x10^9/L",
       "ferritin": "8000 ng/mL", "TG": "2.8 mmol/L", "fibrinogen": "1.8 g/L", "AST": "85 U/L",
       "fever": True, "marrow_hemophagocytosis": True, "ESR": "20 mm/h"}  # fmt: skip


def test_json_output(tmp_path: Path) -> None:
    labs = tmp_path / "labs.json"
    labs.write_text(json.dumps([HS5, {"sample": "empty"}]))
    result = _invoke(str(labs), "--json")
    assert result.exit_code == 0, result.output
    first, second = json.loads(result.stdout)
    assert first["sample"] == "HS5"
    assert (first["hscore"]["total"], first["hscore"]["lower"], first["hscore"]["upper"]) == (
        258,
        258,
        258,
    )
    assert (first["hscore"]["probability"], first["hscore"]["positive"]) == (">99%", True)
    assert (first["hlh2004"]["criteria_met"], first["hlh2004"]["result"]) == (5, "met")
    assert (first["mas2016"]["applicable"], first["mas2016"]["classified"]) == (None, None)
    assert first["ms_score"]["value"] is None and first["ms_score"]["positive"] is None
    assert "missing" in first["ms_score"]["reason"]
    assert first["mh_score"]["total"] == 23 and first["ferritin_esr"]["ratio"] == 400
    assert (second["hscore"]["total"], second["hscore"]["upper"], second["hscore"]["positive"]) == (
        0,
        337,
        None,
    )
    assert second["hlh2004"]["result"] == "undecided"
    assert second["ferritin_esr"]["reason"].startswith("not computable")


def test_table_output(tmp_path: Path) -> None:
    labs = tmp_path / "labs.csv"
    labs.write_text(
        "sample,analyte,value,unit\nP1,ferritin,5000,ng/mL\nP1,ESR,20,mm/h\nP1,fever,yes,\n"
    )
    result = _invoke(str(labs))
    assert result.exit_code == 0, result.output
    for text in (
        "Sample P1",
        "HScore",
        "HLH-2004",
        "MAS 2016",
        "MS score",
        "MH score",
        "Ferritin:ESR",
        "250",
        "Fardet",
        "doi:10.1002/pbc.21039",
    ):
        assert text in result.stdout, text


def test_settings_options(tmp_path: Path) -> None:
    labs = tmp_path / "p.json"
    labs.write_text(
        json.dumps({"sample": "P", "temperature": "39 °C", "sjia": True, "scd25": "2000 U/mL"})
    )
    result = _invoke(
        str(labs), "--json", "--fever-threshold", "38.5", "--scd25-cutoff", "1800 U/mL"
    )
    out = json.loads(result.stdout)[0]
    assert out["mas2016"]["applicable"] is True
    assert next(i for i in out["hlh2004"]["items"] if i["name"].startswith("8."))["met"] is True


def test_bad_value_exits_2_naming_sample_analyte_and_problem(tmp_path: Path) -> None:
    labs = tmp_path / "bad.csv"
    labs.write_text("sample,fibrinogen\nP7,4.5 mg/dL\n")
    result = _invoke(str(labs), "--json")
    assert result.exit_code == EXIT_USAGE and result.stdout == ""
    assert (
        "sample 'P7', fibrinogen: 4.5 mg/dL" in result.stderr
        and "did you mean 4.5 g/L?" in result.stderr
    )


def test_unknown_unit_and_missing_file(tmp_path: Path) -> None:
    labs = tmp_path / "u.json"
    labs.write_text(json.dumps({"sample": "U", "ferritin": "3000 ng/dL"}))
    result = _invoke(str(labs))
    assert (
        result.exit_code == EXIT_USAGE
        and "sample 'U', ferritin: 'ng/dL' is an unknown unit" in result.stderr
    )
    result = _invoke(str(tmp_path / "none.json"))
    assert result.exit_code == EXIT_USAGE and "no such lab-panel file or folder" in result.stderr
