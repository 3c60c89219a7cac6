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
from hemoscan.report.build import build_report_set, build_reports
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
    assert report.marrow_suggested is True and "rule met" in report.marrow.basis
    assert report.marrow.label == "suggested present"


def test_scores_with_and_without_the_image_suggestion(scanned: Path, tmp_path: Path) -> None:
    (report,) = build_reports(scanned, tmp_path / "labs.json")
    with_image = {v.key: v.data for v in report.scores}
    without = {v.key: v.data_without for v in report.scores}
    # temperature 49 + organomegaly 38 + 3 cytopenias 34 + ferritin 50 + TG 44 + fibrinogen 30 + AST 19 = 264
    assert without["hscore"]["lower"] == 264 and without["hscore"]["upper"] == 264 + 35
    assert with_image["hscore"]["total"] == 264 + 35
    assert with_image["hlh2004"]["criteria_met"] == without["hlh2004"]["criteria_met"] + 1
    # only the scores that use the marrow item are shown without it
    assert [v.key for v in report.scores if v.text_without] == ["hscore", "hlh2004"]
    assert all(without[k] is None for k in ("mas2016", "ms_score", "mh_score", "ferritin_esr"))
    html = render_html(report)
    assert "299 (&gt;99%), positive" in html and "264 to 299 (&gt;99%), positive" in html
    assert html.count('class="changed"') == 2  # the marrow item of HScore and of HLH-2004


def test_hostile_sample_names_are_escaped(scanned: Path, tmp_path: Path) -> None:
    (report,) = build_reports(scanned, tmp_path / "labs.json")
    html = render_html(report)
    assert "<script>" not in html
    assert "case&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;&amp;1" in html


def test_missing_labs_are_reported_not_guessed(scanned: Path) -> None:
    (report,) = build_reports(scanned)
    assert report.scores == [] and any("no lab file" in w for w in report.warnings)
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


def test_report_cli_refuses_a_folder_as_its_output_file(scanned: Path, tmp_path: Path) -> None:
    args = ["report", str(scanned), "--out", str(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and f"{tmp_path}: is a folder; --out takes the file" in result.output
    result = CliRunner().invoke(app, [*args[:3], str(tmp_path / "r.html"), "--pdf", str(tmp_path)])
    assert result.exit_code == 2 and "--pdf takes the file" in result.output
    assert not (tmp_path / "r.html").exists()  # nothing written before the refusal


# --- the document a pathologist signs --------------------------------------------------------

NOT_SEEN_SCENE = [  # a hemophagocyte holding two red cells only, a macrophage, a red cell
    (4, 100.0, 100.0, 120.0, 110.0), (5, 80.0, 90.0, 24.0, 24.0), (5, 120.0, 110.0, 24.0, 24.0),
    (3, 200.0, 200.0, 90.0, 80.0), (0, 240.0, 40.0, 30.0, 30.0),
    (4, 400.0, 300.0, 100.0, 100.0, -1.2),  # a near miss (score 0.23, threshold 0.3)
]  # fmt: skip


def _scan(tmp_path: Path, samples: dict[str, int], scene: list | None = None, **options) -> Path:
    """Scan ``samples`` (name -> number of 512 px tiles) with a scripted model."""
    from tests.conftest import HEMOPHAGOCYTE_SCENE, scripted_model

    for sample, n in samples.items():
        for i in range(n):
            write_image(tmp_path / "tiles" / sample / f"f{i}.png", disc_image(512, 512, 8, seed=i)[0])
    out = tmp_path / "scan"
    scan([str(tmp_path / "tiles")], out, ScanOptions(**{"scale": 1.0, **options}),
         model=scripted_model(scene or HEMOPHAGOCYTE_SCENE))  # fmt: skip
    return out


def _labs(tmp_path: Path, samples: list[str]) -> Path:
    path = tmp_path / "labs.json"
    path.write_text(json.dumps({s: LABS[HOSTILE] for s in samples}))
    return path


def test_result_first_then_flags_then_scores_provenance_last(scanned: Path, tmp_path: Path) -> None:
    (report,) = build_reports(scanned, tmp_path / "labs.json")
    html = render_html(report)
    order = [html.index(f'id="{anchor}"') for anchor in
             ("result", "marrow", "qc-flags", "scores-summary", "signoff", "provenance")]  # fmt: skip
    assert order == sorted(order)
    result_box = html[order[0]:order[2]]
    assert "500.00" in result_box and "95% CI" in result_box and "suggested present" in result_box
    assert "quantization None" not in html and "Python" not in html


def test_not_seen_is_unknown_and_keeps_the_marrow_points_open(tmp_path: Path) -> None:
    out = _scan(tmp_path, {"S": 2}, NOT_SEEN_SCENE)
    (report,) = build_reports(out, _labs(tmp_path, ["S"]))
    assert (report.marrow.state, report.marrow.label) == ("not seen", "not seen (4 cells assessed)")
    hscore = report.score_data["hscore"]
    assert (hscore["lower"], hscore["upper"]) == (264, 264 + 35)  # not collapsed to 264-264
    assert all(not v.text_without for v in report.scores)  # nothing to compare with
    assert report.summary_row()["marrow_item"] == "not seen (4 cells assessed)"
    marrow_row = next(i for i in hscore["items"] if i["name"].startswith("Hemophagocytosis"))
    assert marrow_row["note"] == "not seen (4 cells assessed) in the scan: unknown, not absent"


def test_pathologist_value_always_wins(tmp_path: Path) -> None:
    out = _scan(tmp_path, {"S": 1})
    labs = tmp_path / "labs.json"
    labs.write_text(json.dumps({"S": {**LABS[HOSTILE], "marrow_hemophagocytosis": False}}))
    (report,) = build_reports(out, labs)
    assert (report.marrow.label, report.marrow.value) == ("pathologist: no", False)
    assert report.score_data["hscore"]["upper"] == 264 and not any(v.text_without for v in report.scores)


def test_every_score_reads_exactly_as_hemoscan_scores_prints_it(tmp_path: Path) -> None:
    """The report's one-line result of each score is the text ``hemoscan scores`` prints for
    the same panel (the marrow item unknown to both: not seen), ranges included."""
    import html as html_lib

    out = _scan(tmp_path, {"S": 1}, NOT_SEEN_SCENE)
    labs = tmp_path / "labs.json"
    panel = {k: v for k, v in LABS[HOSTILE].items() if k != "ast"} | {"ldh": "900 U/L", "hemorrhage": True}
    labs.write_text(json.dumps({"S": panel}))  # AST and the other MS-score flags not recorded
    (report,) = build_reports(out, labs)
    page = html_lib.unescape(render_html(report))
    printed = CliRunner().invoke(app, ["scores", str(labs)], env={"COLUMNS": "2000"})
    assert printed.exit_code == 0, printed.output
    cli = {}
    for line in printed.stdout.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) == 2 and cells[0] in ("HScore", "HLH-2004", "MAS 2016 (sJIA)", "MS score", "MH score", "Ferritin:ESR"):
            cli[cells[0]] = cells[1]
    assert len(cli) == 6 and " to " in cli["HScore"] and "range" in cli["MS score"]
    for view in report.scores:
        assert cli[view.name] == view.text
        assert f'data-score="{view.key}">{view.text}</span>' in page
    numbers = json.loads(CliRunner().invoke(app, ["scores", str(labs), "--json"]).stdout)[0]
    for key in ("hscore", "mh_score", "ms_score"):
        assert (numbers[key]["lower"], numbers[key]["upper"]) == (report.score_data[key]["lower"], report.score_data[key]["upper"])


def test_labs_that_do_not_match_are_loud_and_exit_1(tmp_path: Path) -> None:
    out = _scan(tmp_path, {"sample_01": 1, "sample_02": 1})
    labs = _labs(tmp_path, ["sample_1", "sample_02"])
    args = ["report", str(out), "--labs", str(labs), "--out", str(tmp_path / "r" / "report.html")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    assert "no lab panel for scanned sample 'sample_01'" in result.stderr
    assert "lab panel 'sample_1'" in result.stderr and "did you mean 'sample_01'?" in result.stderr
    assert (tmp_path / "r" / "report-sample_01.html").is_file()  # written all the same
    rows = {r["sample"]: r for r in csv.DictReader(open(tmp_path / "r" / "report-samples.csv"))}
    assert (rows["sample_01"]["labs"], rows["sample_02"]["labs"]) == ("missing", "matched")
    accepted = CliRunner().invoke(app, [*args, "--allow-missing-labs"])
    assert accepted.exit_code == 0 and "sample_01" in accepted.stderr
    matched = CliRunner().invoke(app, [*args[:3], str(_labs(tmp_path, ["sample_01", "sample_02"])), *args[4:]])
    assert matched.exit_code == 0 and matched.stderr == ""


def test_names_that_differ_only_in_replaced_characters_get_their_own_files(tmp_path: Path) -> None:
    out = _scan(tmp_path, {"case 1": 1, "case_1": 1}, save_crops=True)
    written = write_reports(build_reports(out), tmp_path / "r" / "report.html")
    pages = sorted(p for p in written if p.name.startswith("report-case"))
    assert len(pages) == 2 and pages[0] != pages[1]
    for page in pages:
        title = re.search(r'id="sample-name">([^<]*)<', page.read_text()).group(1)
        assert page.name == ("report-case_1.html" if title == "case_1" else page.name)
    index = (tmp_path / "r" / "report.html").read_text()
    assert sorted(re.findall(r'href="(report-case[^"]*)"', index)) == sorted(p.name for p in pages)
    crop_folders = sorted(p.name for p in (out / "crops").iterdir())
    assert len(crop_folders) == 2 and "case_1" in crop_folders


def test_outputs_respect_the_umask(scanned: Path, tmp_path: Path) -> None:
    import os
    import stat

    previous = os.umask(0o022)
    try:
        written = write_reports(build_reports(scanned), tmp_path / "r.html", tmp_path / "r.pdf")
    finally:
        os.umask(previous)
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in written} == {"0o644"}
    assert {oct(stat.S_IMODE((scanned / n).stat().st_mode)) for n in ("summary.json", "run.json")} <= {
        "0o644", oct(0o666 & ~previous)}


def test_pdf_summary_page_then_every_page_names_sample_date_and_page(scanned: Path, tmp_path: Path) -> None:
    pypdf = pytest.importorskip("pypdf")
    (report,) = build_reports(scanned, tmp_path / "labs.json")
    write_reports([report], tmp_path / "r.html", tmp_path / "r.pdf")
    pages = [p.extract_text() for p in pypdf.PdfReader(tmp_path / "r.pdf").pages]
    assert len(pages) >= 3
    for i, text in enumerate(pages, 1):
        assert f"page {i} of {len(pages)}" in text
        assert f"sample {HOSTILE}" in text  # the sample id, as given
        assert f"report date {report.generated_at[:10]}" in text
    first = pages[0]
    for part in ("Result", "Image quality", "Scores", "Reviewed by", "Signature", "Date"):
        assert part in first
    assert "Evidence" not in first and "Provenance" not in first
    assert "Provenance" in pages[-1]


def test_qc_flags_near_misses_macrophages_and_tile_links(tmp_path: Path) -> None:
    out = _scan(tmp_path, {"S": 2}, NOT_SEEN_SCENE, save_overlays=True)
    (report,) = build_reports(out, _labs(tmp_path, ["S"]))
    assert report.qc.codes == ("too_few_cells",) and report.summary_row()["qc_flags"] == "too_few_cells"
    assert [c.score for c in report.near_misses] == pytest.approx([0.2315] * 2, abs=1e-4)
    assert report.macrophages and report.macrophages[0].label == "macrophage"
    page = tmp_path / "r" / "report.html"
    html = render_html(report, page)
    assert "near miss: not counted" in html and "Macrophages (no engulfed cell found)" in html
    assert "green box: the cell the model called" in html and "white boxes: the cells it holds" in html
    links = set(re.findall(r'href="([^"]+\.jpg)"', html))
    assert links and all(link.startswith("../scan/overlays/") for link in links)
    assert all((page.parent / link).resolve().is_file() for link in links)


def test_index_page_reads_well(tmp_path: Path) -> None:
    out = _scan(tmp_path, {"A": 1, "B": 1})
    write_reports(build_report_set(out, _labs(tmp_path, ["A"])).reports, tmp_path / "r" / "report.html")
    index = (tmp_path / "r" / "report.html").read_text()
    headers = re.findall(r"<th>([^<]*)</th>", index)
    assert "Image-quality flags" in headers and "Labs" in headers and "Marrow item" in headers
    assert not any("_" in h for h in headers)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", index, re.S)
    assert "True" not in cells and "False" not in cells and "None" not in cells
    assert "too few cells" in index and ">missing<" in index and "applicability unknown" in index


def _verdicts(scan: Path, hemo: list[str], macro: list[str]) -> None:
    """Hemophagocytes: the first accepted as it is, the second holding only red cells, the third
    rejected; macrophages: ``macro`` of them accepted."""
    from hemoscan.review.index import ReviewIndex
    from hemoscan.review.log import ReviewLog, Verdict

    index = ReviewIndex(scan)
    hosts = [s for s in index.suggestions if s.detection.label == "hemophagocyte"]
    macros = [s for s in index.suggestions if s.detection.label == "macrophage"]
    kinds = {"keep": ("accept", "hemophagocyte", {"rbc": 2, "nucleated": 1, "platelet": 0}),
             "rbc only": ("accept", "hemophagocyte", {"rbc": 2, "nucleated": 0, "platelet": 0}),
             "reject": ("reject", None, None)}  # fmt: skip
    out = [Verdict(s.id, kinds[k][0], "dr r", s.sample, s.tile, kinds[k][1], kinds[k][2], s.detection.label, 0.9)
           for s, k in zip(hosts, hemo)]  # fmt: skip
    out += [Verdict(s.id, "accept", "dr s", s.sample, s.tile, "macrophage", None, "macrophage", 0.9)
            for s in macros[: len(macro)]]  # fmt: skip
    ReviewLog(scan).append(out)


def _csv_row(path: Path) -> dict[str, str]:
    with open(path, newline="") as f:
        return next(csv.DictReader(f))


def test_verdicts_flow_into_the_report_and_its_csv(scanned: Path, tmp_path: Path) -> None:
    summary = (scanned / "summary.json").read_bytes()
    (before,) = build_reports(scanned)
    assert before.summary_row()["hemophagocytes_pending"] == 3 and before.review == []
    assert before.summary_row()["review_complete"] is False and before.confirmed_rate is None
    _verdicts(scanned, ["keep", "rbc only"], [])  # partial: both rates, labelled
    (partial,) = build_reports(scanned)
    html = render_html(partial)
    assert partial.confirmed_rate[0] == pytest.approx(1000 * 2 / 6) and not partial.rate_from_review
    assert "suggested by the model" in html and "confirmed so far" in html and "not final" in html
    assert "review incomplete" in html and "1 of 3 pending" in html
    _verdicts(scanned, ["keep", "rbc only", "reject"], ["x", "x", "x"])  # complete
    (report,) = build_reports(scanned)
    assert report.rate_from_review
    rate, (lo, hi) = report.confirmed_rate
    assert rate == pytest.approx(1000 * 2 / 6) and lo < rate < hi
    html = render_html(report)
    assert "confirmed by review" in html and "review complete" in html
    assert sorted(report.review_status.reviewers) == ["dr r", "dr s"] and "dr r" in html and "dr s" in html
    assert "2 confirmed, 1 rejected" in html
    assert "2 hemophagocyte(s) confirmed by review" in report.marrow.basis
    assert "1 holding nucleated" in report.marrow.basis  # the reviewer's counts, not the model's
    write_reports([report, report], tmp_path / "r.html")  # two pages: the index and its CSV
    row = _csv_row(tmp_path / "r-samples.csv")
    assert (row["hemophagocytes_confirmed"], row["hemophagocytes_rejected"],
            row["hemophagocytes_pending"], row["review_complete"]) == ("2", "1", "0", "True")  # fmt: skip
    assert row["hemophagocytes"] == "3" and row["hemophagocytes_per_1000_nucleated"] == "500.0"
    assert "(confirmed by review)" in (tmp_path / "r.html").read_text()
    assert (scanned / "summary.json").read_bytes() == summary  # the scan's summary is untouched


def test_provenance_says_how_the_sample_was_scaled(tmp_path: Path) -> None:
    out = _scan(tmp_path, {"s": 2})
    write_reports(build_reports(out), tmp_path / "rep" / "report.html")
    html = (tmp_path / "rep" / "report.html").read_text()
    assert "Magnification</th><td>no estimate; tiles by source: given 2" in html
