"""Report content: numbers, evidence, scores with and without the image suggestion, escaping."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hemoscan.cli.app import app
from hemoscan.pipeline import ScanOptions, scan
from hemoscan.report.build import build_reports
from hemoscan.report.render import render_html, write_reports
from tests.conftest import disc_image, write_image

HOSTILE = 'case<script>alert("x")</script>&1'
LABS = {
    HOSTILE: {
        "temperature": "39.6 °C",
        "hepatomegaly": True,
        "splenomegaly": True,
        "hemoglobin": "8.1 g/dL",
        "leukocytes": "2.9 x10^9/L",
        "platelets": "85 x10^9/L",
        "ferritin": "7200 ng/mL",
        "triglycerides": "3.4 mmol/L",
        "fibrinogen": "1.2 g/L",
        "ast": "150 U/L",
        "immunosuppression": False,
    }
}


@pytest.fixture
def scanned(hemophagocyte_model, tmp_path: Path) -> Path:
    for i in range(3):
        write_image(tmp_path / "tiles" / f"field_{i}.png", disc_image(320, 288, 0)[0])
    out = tmp_path / "scan"
    scan([str(tmp_path / "tiles")], out, ScanOptions(scale=1.0, sample_id=HOSTILE), model=hemophagocyte_model)
    (tmp_path / "labs.json").write_text(json.dumps(LABS))
    return out


def test_report_numbers_and_evidence(scanned: Path, tmp_path: Path) -> None:
    (report,) = build_reports(scanned, tmp_path / "labs.json")
    f = report.findings
    assert (f.counts["hemophagocyte"], f.nucleated_cells_assessed) == (3, 6)
    assert f.hemophagocytes_per_1000_nucleated == 500.0
    lo, hi = report.rate_ci_per_1000
    assert 180 < lo < 500 < hi < 820
    assert len(report.gallery) == 3 and all(
        c.image_uri.startswith("data:image/jpeg;base64,") for c in report.gallery
    )
    assert report.gallery[0].engulfed == {"rbc": 2, "nucleated": 1, "platelet": 0}
    assert report.marrow_suggested is True and "rule met" in report.marrow_suggestion


def test_scores_with_and_without_the_image_suggestion(scanned: Path, tmp_path: Path) -> None:
    (report,) = build_reports(scanned, tmp_path / "labs.json")
    with_image = {v.key: v.data for v in report.scores_with_image}
    without = {v.key: v.data for v in report.scores_without_image}
    # temperature 49 + organomegaly 38 + 3 cytopenias 34 + ferritin 50 + TG 44 + fibrinogen 30 + AST 19 = 264
    assert without["hscore"]["lower"] == 264 and without["hscore"]["upper"] == 264 + 35
    assert with_image["hscore"]["total"] == 264 + 35
    assert with_image["hlh2004"]["criteria_met"] == without["hlh2004"]["criteria_met"] + 1
    html = render_html(report)
    assert "299 points" in html and "264 points" in html
    assert html.count('class="changed"') >= 2  # the marrow item of HScore and of HLH-2004


def test_hostile_sample_names_are_escaped(scanned: Path, tmp_path: Path) -> None:
    (report,) = build_reports(scanned, tmp_path / "labs.json")
    html = render_html(report)
    assert "<script>" not in html
    assert "case&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;1" in html


def test_missing_labs_are_reported_not_guessed(scanned: Path) -> None:
    (report,) = build_reports(scanned)
    assert report.scores_with_image == [] and any("no lab file" in w for w in report.warnings)
    assert "No lab panel for this sample" in render_html(report)


def test_many_samples_give_an_index_csv_and_one_page_each(
    hemophagocyte_model, tmp_path: Path
) -> None:
    for sample in ("A", "B"):
        write_image(tmp_path / "tiles" / sample / "f.png", disc_image(320, 288, 0)[0])
    scan([str(tmp_path / "tiles")], tmp_path / "scan", ScanOptions(scale=1.0), model=hemophagocyte_model)
    written = write_reports(build_reports(tmp_path / "scan"), tmp_path / "rep" / "report.html")
    names = sorted(p.name for p in written)
    assert names == ["report-A.html", "report-B.html", "report-samples.csv", "report.html"]
    rows = list(csv.DictReader(open(tmp_path / "rep" / "report-samples.csv")))
    assert [r["sample"] for r in rows] == ["A", "B"] and rows[0]["hemophagocytes"] == "1"
    index = (tmp_path / "rep" / "report.html").read_text()
    assert 'href="report-A.html"' in index


def test_report_cli_writes_html_and_pdf(scanned: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(scanned), "--labs", str(tmp_path / "labs.json"),
                                      "--out", str(tmp_path / "r.html"), "--pdf", str(tmp_path / "r.pdf")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (tmp_path / "r.pdf").read_bytes().startswith(b"%PDF")
    html = (tmp_path / "r.html").read_text()
    assert "Research use only" in html and not re.search(
        r'src="(https?:)?//', html
    )  # self-contained
