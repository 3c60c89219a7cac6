"""JSON, YAML and CSV (wide and long) lab-panel files, folders, and layout errors."""

from __future__ import annotations

import json
import tracemalloc
from decimal import Decimal as D
from pathlib import Path

import pytest

from hemoscan.errors import LabFileError, LabValueError
from hemoscan.labs import read_lab_panels, readers
from hemoscan.labs.readers import iter_lab_panels


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_json_single_sample(tmp_path: Path) -> None:
    f = _write(tmp_path / "p1.json", json.dumps({"sample": "P1", "ferritin": "3000 ng/mL", "fever": True,
                                                "notes": "free text is ignored"}))  # fmt: skip
    (panel,) = read_lab_panels(f)
    assert (
        panel.sample == "P1"
        and panel.quantity("ferritin", "ng/mL") == D(3000)
        and panel.flag("fever") is True
    )
    assert panel.source == str(f)


def test_json_without_sample_is_named_after_the_file(tmp_path: Path) -> None:
    f = _write(tmp_path / "case-12.json", json.dumps({"ferritin": {"value": 3000, "unit": "µg/L"}}))
    assert [p.sample for p in read_lab_panels(f)] == ["case-12"]


def test_json_list_mapping_and_samples_key(tmp_path: Path) -> None:
    samples = [{"sample": "A", "Hb": "9 g/dL"}, {"sample": "B", "PLT": "80 G/L"}]
    listed = _write(tmp_path / "a.json", json.dumps(samples))
    mapped = _write(
        tmp_path / "b.json", json.dumps({"C": {"TG": "3 mmol/L"}, "D": {"fibrinogen": "1.2 g/L"}})
    )
    wrapped = _write(
        tmp_path / "c.json", json.dumps({"samples": [{"sample": "E", "ESR": "20 mm/h"}]})
    )
    assert [p.sample for p in read_lab_panels(listed)] == ["A", "B"]
    c, d = read_lab_panels(mapped)
    assert (c.sample, d.sample) == ("C", "D") and c.quantity("triglycerides", "mmol/L") == D(3)
    assert read_lab_panels(wrapped)[0].quantity("esr", "mm/h") == D(20)


def test_json_numbers_are_exact(tmp_path: Path) -> None:
    f = _write(
        tmp_path / "p.json",
        '{"sample": "P", "fibrinogen": {"value": 4.0, "unit": "g/L"}, '
        '"AST": {"value": 0.1, "unit": "µkat/L"}}',
    )
    (panel,) = read_lab_panels(f)
    assert panel.quantity("fibrinogen", "mg/dL") == D(400) and panel.quantity("ast", "U/L") == D(6)


def test_yaml(tmp_path: Path) -> None:
    pytest.importorskip("yaml")
    f = _write(tmp_path / "labs.yaml", "- sample: Y1\n  ferritin: 3000 ng/mL\n  fever: yes\n"
                                       "  fibrinogen:\n    value: 1.8\n    unit: g/L\n"
                                       "- sample: Y2\n  WBC: 4.2 x10^9/L\n")  # fmt: skip
    y1, y2 = read_lab_panels(f)
    assert y1.flag("fever") is True and y1.quantity("fibrinogen", "g/L") == D("1.8")
    assert y2.quantity("leukocytes", "×10⁹/L") == D("4.2")


def test_csv_wide_with_units_in_cells_and_in_headers(tmp_path: Path) -> None:
    f = _write(tmp_path / "wide.csv",
               "sample,Ferritin (ng/mL),PLT [x10^9/L],TG,fever,sIL-2R\n"
               "P1,3000,80,133 mg/dL,yes,pending\n"
               "P2,450,250 ×10³/µL,,no,\n")  # fmt: skip
    p1, p2 = read_lab_panels(f)
    assert p1.quantity("ferritin", "ng/mL") == D(3000) and p1.quantity("platelets", "×10⁹/L") == D(
        80
    )
    assert p1.value("triglycerides").reported_unit == "mg/dL" and p1.is_pending("scd25")
    assert p2.quantity("platelets", "×10⁹/L") == D(250)
    assert p2.quantity("triglycerides", "mmol/L") is None and p2.flag("fever") is False


def test_csv_semicolons_and_bom(tmp_path: Path) -> None:
    f = tmp_path / "semi.csv"
    f.write_bytes("\ufeffSample;Hb (g/L);WBC\n# a comment\n\nP1;85;3500 /µL\n".encode())
    (panel,) = read_lab_panels(f)
    assert panel.quantity("hemoglobin", "g/dL") == D("8.5")
    assert panel.quantity("leukocytes", "×10⁹/L") == D("3.5")


def test_csv_long(tmp_path: Path) -> None:
    f = _write(tmp_path / "long.csv",
               "sample,analyte,value,unit\n"
               "P1,ferritin,3000,ng/mL\nP1,Temp,102.5,F\nP1,splenomegaly,yes,\nP2,PLT,90 x10^9/L,\n")  # fmt: skip
    p1, p2 = read_lab_panels(f)
    assert p1.quantity("ferritin", "ng/mL") == D(3000) and p1.flag("splenomegaly") is True
    assert round(p1.quantity("temperature", "°C"), 2) == D("39.17")
    assert p2.quantity("platelets", "×10⁹/L") == D(90)


def test_folder_of_files(tmp_path: Path) -> None:
    _write(tmp_path / "a.json", json.dumps({"sample": "A", "ferritin": "1 ng/mL"}))
    _write(tmp_path / "b.csv", "sample,ferritin\nB,2 ng/mL\n")
    _write(tmp_path / "notes.txt", "not a lab file")
    assert [p.sample for p in read_lab_panels(tmp_path)] == ["A", "B"]


def _file_error(tmp_path: Path, name: str, text: str, error: type = LabFileError) -> str:
    f = _write(tmp_path / name, text)
    with pytest.raises(error) as info:
        read_lab_panels(f)
    assert str(f) in str(info.value)
    return str(info.value)


def test_unknown_analyte_names_the_analyte_and_the_file(tmp_path: Path) -> None:
    message = _file_error(
        tmp_path, "w.csv", "sample,ferritin,procalcitonin\nP1,1 ng/mL,2 ng/mL\n", LabValueError
    )
    assert "sample 'P1', procalcitonin: unknown analyte name" in message
    message = _file_error(
        tmp_path, "j.json", json.dumps({"sample": "P2", "CRP": "5 mg/L"}), LabValueError
    )
    assert "sample 'P2', CRP: unknown analyte name" in message


def test_bad_values_in_files_name_file_sample_and_analyte(tmp_path: Path) -> None:
    message = _file_error(
        tmp_path, "l.csv", "sample,analyte,value,unit\nP9,fibrinogen,4.5,mg/dL\n", LabValueError
    )
    assert "sample 'P9', fibrinogen:" in message and "did you mean 4.5 g/L?" in message
    message = _file_error(
        tmp_path, "h.csv", "sample,ferritin (ng/mL)\nP3,3000 µg/L\n", LabValueError
    )
    assert "sample 'P3', ferritin" in message and "carries the unit" in message


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("no_sample.csv", "patient,ferritin\nP1,1 ng/mL\n", "needs a 'sample' column"),
        ("dup.csv", "sample,ferritin\nP1,1 ng/mL\nP1,2 ng/mL\n", "sample 'P1' has two rows"),
        ("ragged.csv", "sample,ferritin\nP1,1 ng/mL,extra\n", "has 3 cells, the header has 2"),
        ("blank.csv", "sample,ferritin\n,1 ng/mL\n", "has no sample name"),
        ("empty.csv", "\n\n", "empty CSV file"),
        ("bad.json", "{not json", "invalid JSON"),
        (
            "list.json",
            json.dumps([{"ferritin": "1 ng/mL"}]),
            "entry 1 is not an object with a 'sample' name",
        ),
        ("scalar.json", "42", "expected a sample object"),
        ("labs.xlsx", "binary", "unsupported lab-panel file type"),
        ("twice.json", json.dumps([{"sample": "A"}, {"sample": "A"}]), "sample 'A' appears twice"),
    ],
)
def test_layout_errors(tmp_path: Path, name: str, text: str, fragment: str) -> None:
    assert fragment in _file_error(tmp_path, name, text)


def test_long_csv_duplicate_analyte(tmp_path: Path) -> None:
    text = "sample,analyte,value,unit\nP1,PLT,80,G/L\nP1,PLT,90,G/L\n"
    message = _file_error(tmp_path, "l.csv", text, LabValueError)
    assert "sample 'P1', PLT: given twice" in message


def test_missing_path_and_empty_folder(tmp_path: Path) -> None:
    with pytest.raises(LabFileError, match="no such lab-panel file or folder"):
        read_lab_panels(tmp_path / "nope.json")
    with pytest.raises(LabFileError, match="holds no lab-panel file"):
        read_lab_panels(tmp_path)


BILLION_LAUGHS = "\n".join(
    ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    + [f"{chr(98 + i)}: &{chr(98 + i)} [{','.join(['*' + chr(97 + i)] * 9)}]" for i in range(8)]
)


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("key.json", '{"sample": "P1", "ferritin": "3000 ng/mL", "ferritin": "9000 ng/mL"}',
         "key 'ferritin' is given twice in one object ('3000 ng/mL' and '9000 ng/mL')"),
        ("samples.json", '{"P1": {"fever": true}, "P1": {"fever": false}}',
         "key 'P1' is given twice in one object"),
        ("key.yaml", "sample: P1\nferritin: 3000 ng/mL\nferritin: 9000 ng/mL\n",
         "key 'ferritin' is given twice in one mapping (lines 2 and 3)"),
        ("columns.csv", "sample,ferritin,ferritin\nP1,3000 ng/mL,9000 ng/mL\n",
         "columns 2 ('ferritin') and 3 ('ferritin') both give ferritin"),
        ("aliases.csv", "sample,Ferritin (ng/mL),serum ferritin\nP1,3000,9000 ng/mL\n",
         "columns 2 ('Ferritin (ng/mL)') and 3 ('serum ferritin') both give ferritin"),
        ("bomb.yaml", BILLION_LAUGHS, "line 1: YAML anchors and aliases (& and *) are not accepted"),
        ("anchor.yaml", "sample: P1\nferritin: &f 3000 ng/mL\n", "line 2: YAML anchors"),
        ("merge.yaml", "base: &b {fever: true}\nP1:\n  <<: *b\n", "YAML anchors and aliases"),
        ("int.json", '{"sample": "P1", "ferritin": {"value": 1' + "0" * 5000 + ', "unit": "ng/mL"}}',
         "has more than 30 digits"),
        ("nan.json", '{"sample": "P1", "ferritin": {"value": NaN, "unit": "ng/mL"}}',
         "NaN is not a number"),
        ("deep.json", "[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ("int.yaml", "sample: P1\nferritin: {value: 1" + "0" * 5000 + ", unit: ng/mL}\n",
         "invalid YAML"),
        ("utf8.csv", "sample,ferritin\nP1,3000 ng/mL\n", "cannot read lab-panel file"),
    ],
)  # fmt: skip
def test_hostile_files_are_refused_naming_the_problem(
    tmp_path: Path, name: str, text: str, fragment: str
) -> None:
    if name == "utf8.csv":
        text += "P2,\udcff\n"
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    with pytest.raises(LabFileError) as info:
        read_lab_panels(path)
    assert str(path) in str(info.value) and fragment in str(info.value)


@pytest.mark.parametrize(
    ("name", "text", "fragment"),
    [
        ("aliases.json", '{"sample": "P1", "ferritin": "3000 ng/mL", "serum ferritin": "9 ng/mL"}',
         "sample 'P1', ferritin: given twice (as 'ferritin' and 'serum ferritin')"),
        ("long.csv", "sample,analyte,value,unit\nP1,ferritin,3000,ng/mL\nP2,fever,yes,\n"
                     "P1,Serum Ferritin,9000,ng/mL\n",
         "sample 'P1', Serum Ferritin: given twice (data row 2 as 'ferritin' and data row 4 as "
         "'Serum Ferritin')"),
        ("exp.csv", "sample,ferritin\nP1,1e999999999 ng/mL\n",
         "'1e999999999 ng/mL': a number hemoscan reads has at most 30 significant digits"),
        ("exp.json", '{"sample": "P1", "ferritin": {"value": 1e999999999, "unit": "ng/mL"}}',
         "at most 30 significant digits and a magnitude between 1e-30 and 1e30"),
        ("tiny.json", '{"sample": "P1", "ferritin": {"value": 0E-99999999, "unit": "ng/mL"}}',
         "at most 30 significant digits"),
        ("digits.csv", "sample,ferritin\nP1," + "1" * 31 + " ng/mL\n", "at most 30 significant"),
        ("long_token.csv", "sample,ferritin\nP1," + "1" * 100_000 + " ng/mL\n", "at most 30"),
        ("inf.yaml", "sample: P1\nferritin: {value: 1.0e+999, unit: ng/mL}\n",
         "inf is not a finite number"),
    ],
)  # fmt: skip
def test_hostile_values_are_refused_naming_sample_and_analyte(
    tmp_path: Path, name: str, text: str, fragment: str
) -> None:
    message = _file_error(tmp_path, name, text, LabValueError)
    assert fragment in message and len(message) < 600


def test_json_and_yaml_files_have_a_size_limit(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(readers.MAX_DOCUMENT_BYTES, ".json", 100)
    text = json.dumps({"sample": "P1", "notes": "x" * 200, "ferritin": "1 ng/mL"})
    assert "more than the 100 a .json lab file may hold" in _file_error(tmp_path, "big.json", text)


def test_csv_files_are_streamed(tmp_path: Path) -> None:
    """Panels come one at a time (an error further on is raised when reached), and memory
    does not grow with the number of samples beyond the names kept to refuse repeats."""

    def wide(n: int) -> Path:
        rows = "".join(f"P{i:06d},{1000 + i} ng/mL,2.{i % 10} mmol/L,yes\n" for i in range(n))
        return _write(tmp_path / f"w{n}.csv", "sample,ferritin,TG,fever\n" + rows)

    def peak(path: Path) -> int:
        tracemalloc.start()
        for _ in iter_lab_panels(path):
            pass
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        return peak

    small, large = peak(wide(500)), peak(wide(5000))
    assert (large - small) / 4500 < 400  # bytes per extra sample (about 1300 held whole)
    broken = _write(tmp_path / "b.csv", "sample,ferritin\nP1,1 ng/mL\nP2,1 kg\n")
    panels = iter_lab_panels(broken)
    assert next(panels).sample == "P1"
    with pytest.raises(LabValueError, match="sample 'P2', ferritin"):
        next(panels)


def test_long_csv_rows_of_a_sample_may_be_apart(tmp_path: Path) -> None:
    f = _write(tmp_path / "long.csv", "sample,analyte,value,unit\nP1,ferritin,3000,ng/mL\n"
               "P2,ferritin,200,ng/mL\nP1,TG,2.1,mmol/L\nP3,fever,no,\n")  # fmt: skip
    p1, p2, p3 = read_lab_panels(f)  # in order of first appearance
    assert (p1.sample, p2.sample, p3.sample) == ("P1", "P2", "P3")
    assert p1.quantity("triglycerides", "mmol/L") == D("2.1") and p3.flag("fever") is False
