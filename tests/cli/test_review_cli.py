"""`hemoscan review`: options that go together, and clear errors instead of tracebacks."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from hemoscan.cli.app import app
from tests.review.conftest import scanned  # noqa: F401 - the fixture


def _run(*args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["review", *args])


def test_options_that_go_together(scanned: Path, tmp_path: Path) -> None:
    assert "--export and --out go together" in _run(str(scanned), "--export", "coco").output
    assert "not both" in _run(str(scanned), "--export", "coco", "--out", str(tmp_path), "--apply", "x.csv").output
    assert "--only-changed is for --apply" in _run(str(scanned), "--only-changed").output
    result = _run(str(scanned), "--apply", str(tmp_path / "v.txt"), "--reviewer", "a")
    assert result.exit_code == 2 and "give a .csv or a QuPath .geojson file" in result.output


def test_a_folder_that_is_not_a_scan(tmp_path: Path) -> None:
    result = _run(str(tmp_path), "--no-browser")
    assert result.exit_code == 2 and "not a hemoscan scan folder" in result.output
    assert "Traceback" not in result.output


def test_help_names_the_workflow() -> None:
    result = CliRunner().invoke(app, ["review", "--help"])
    assert result.exit_code == 0
    for option in ("--reviewer", "--port", "--no-browser", "--apply", "--export"):
        assert option in result.output
