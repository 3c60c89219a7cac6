"""Every row of issue 13's table, through the CLI: a clear refusal (exit 2) or a recorded
failure (exit 1), never a Python traceback, and nothing lost or silently changed."""

from __future__ import annotations

import csv
import errno
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from hemoscan.cli.app import EXIT_TILES_FAILED, EXIT_USAGE, app
from hemoscan.io.scan_store import ScanStore
from hemoscan.models.loading import CONFIG_FILE, manifest_entry
from tests.conftest import disc_image, unprivileged, write_image
from tests.faults.conftest import FailingWrites, committed_rows, outputs
from tests.labs.test_readers import BILLION_LAUGHS

runner = CliRunner()


def cli(*args: str | Path) -> Result:
    """Run hemoscan; fail the test on any traceback (an exception other than a clean exit)."""
    result = runner.invoke(app, [str(a) for a in args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert "Traceback" not in result.output
    return result


@dataclass
class Case:
    model: Path
    tiles: Path
    tmp: Path
    failing_writes: FailingWrites
    monkeypatch: pytest.MonkeyPatch

    def scan(self, out: Path, *extra: str | Path, tiles: Path | None = None) -> Result:
        return cli("scan", tiles or self.tiles, "--out", out, "--model", self.model, "-q", *extra)

    def scores(self, name: str, text: str) -> Result:
        path = self.tmp / name
        path.write_text(text)
        return cli("scores", path, "--json")


def refused(result: Result, *fragments: str) -> None:
    assert result.exit_code == EXIT_USAGE, result.output
    for fragment in fragments:
        assert fragment in result.output, (fragment, result.output)


def disk_full(c: Case) -> None:
    clean, out = c.tmp / "clean", c.tmp / "out"
    c.scan(clean)
    c.failing_writes.on("write", lambda p: p.endswith("detections.jsonl"), 0, errno.ENOSPC)
    refused(c.scan(out), "No space left on device [ENOSPC]", "re-run the same command")
    c.monkeypatch.undo()
    assert c.scan(out).exit_code == 0 and outputs(out) == outputs(clean)


def second_writer(c: Case) -> None:
    out = c.tmp / "out"
    c.scan(out)
    with ScanStore(out, json.loads((out / "run.json").read_text())["settings"]):
        refused(c.scan(out), str(out), "another hemoscan scan is writing", f"PID {os.getpid()}")
    assert c.scan(out).exit_code == 0


def out_is_a_file(c: Case) -> None:
    (c.tmp / "out").write_text("x")
    refused(c.scan(c.tmp / "out"), "is a file, not a folder")
    refused(c.scan(c.tmp / "out" / "sub"), "part of its path is a file")


def out_is_read_only(c: Case) -> None:
    (c.tmp / "ro").mkdir(mode=0o555)
    with unprivileged():
        refused(c.scan(c.tmp / "ro"), "cannot write in the output folder (Permission denied)")
        refused(c.scan(c.tmp / "ro" / "new"), "cannot create the output folder (Permission denied)")


def hostile_model_configs(c: Case) -> None:
    for value, shown in ((float("nan"), "nan"), (-5, "-5"), ("NaN", "'NaN'")):
        folder = c.tmp / f"model-{shown}"
        shutil.copytree(c.model, folder)
        config = json.loads((folder / CONFIG_FILE).read_text())
        config["score_thresholds"] = {"nucleated": 0.5}
        config["default_threshold"] = value
        (folder / CONFIG_FILE).write_text(json.dumps(config))
        result = cli("scan", c.tiles, "--out", c.tmp / f"out-{shown}", "--model", folder, "-q")
        refused(result, f"default_threshold must be a finite number in [0, 1] (got {shown})")
        assert not (c.tmp / f"out-{shown}").exists()


def changed_shipped_config(c: Case) -> None:
    weights = c.tmp / "weights"
    shutil.copytree(c.model, weights / "tiny")
    (weights / "manifest.json").write_text(json.dumps({"tiny": manifest_entry(weights / "tiny")}))
    c.monkeypatch.setenv("HEMOSCAN_WEIGHTS_DIR", str(weights))
    assert cli("scan", c.tiles, "--out", c.tmp / "a", "--model", "tiny", "-q").exit_code == 0
    summary = json.loads((c.tmp / "a" / "summary.json").read_text())
    shipped = summary["samples"][0]["provenance"]["model_config_sha256"]
    assert shipped == manifest_entry(weights / "tiny")["config_sha256"]
    config = json.loads((weights / "tiny" / CONFIG_FILE).read_text())
    (weights / "tiny" / CONFIG_FILE).write_text(json.dumps({**config, "default_threshold": 0.01}))
    result = cli("scan", c.tiles, "--out", c.tmp / "b", "--model", "tiny", "-q")
    refused(result, "shipped model 'tiny'", "the config was changed or replaced")
    # the same folder as a user's own model folder: accepted, its own config hash recorded
    assert cli("scan", c.tiles, "--out", c.tmp / "c", "--model", weights / "tiny", "-q").exit_code == 0
    own = json.loads((c.tmp / "c" / "summary.json").read_text())["samples"][0]["provenance"]
    assert own["model_config_sha256"] not in ("", shipped)


def duplicate_analytes(c: Case) -> None:
    refused(c.scores("a.json", '{"P1": {"ferritin": "3000 ng/mL", "ferritin": "9000 ng/mL"}}'),
            "key 'ferritin' is given twice in one object ('3000 ng/mL' and '9000 ng/mL')")
    refused(c.scores("a.yaml", "P1:\n  ferritin: 3000 ng/mL\n  ferritin: 9000 ng/mL\n"),
            "key 'ferritin' is given twice in one mapping (lines 2 and 3)")
    refused(c.scores("a.csv", "sample,ferritin,ferritin\nP1,3000 ng/mL,9000 ng/mL\n"),
            "columns 2 ('ferritin') and 3 ('ferritin') both give ferritin")
    refused(c.scores("b.csv", "sample,analyte,value,unit\nP1,ferritin,3000,ng/mL\n"
                              "P1,ferritin,9000,ng/mL\n"), "data row 2 as 'ferritin' and data row 3")


def yaml_alias_bomb(c: Case) -> None:
    refused(c.scores("bomb.yaml", BILLION_LAUGHS), "YAML anchors and aliases (& and *)")


def huge_exponent(c: Case) -> None:
    refused(c.scores("e.json", '{"P1": {"ferritin": "1e999999999 ng/mL"}}'),
            "sample 'P1', ferritin: '1e999999999 ng/mL': a number hemoscan reads has at most 30")


def large_lab_file(c: Case) -> None:
    """Streamed, checked whole before anything is printed: a bad last row prints no scores."""
    rows = "".join(f"P{i:05d},{100 + i} ng/mL,yes\n" for i in range(3000))
    result = c.scores("big.csv", "sample,ferritin,fever\n" + rows + "P99999,1 kg,yes\n")
    refused(result, "sample 'P99999', ferritin")
    assert "hscore" not in result.output
    c.monkeypatch.setitem(__import__("hemoscan.labs.readers").labs.readers.MAX_DOCUMENT_BYTES,
                          ".json", 1000)  # fmt: skip
    refused(c.scores("big.json", json.dumps({"P1": {"notes": "x" * 2000}})),
            "a .json lab file may hold (it is read whole)")


def unwalkable_sources(c: Case) -> None:
    tiles, out = c.tiles, c.tmp / "out"
    write_image(tiles / "locked" / "t.png", disc_image(64, 64, 1)[0])
    (tiles / "locked").chmod(0)
    os.symlink("missing.png", tiles / "patient_A" / "broken.png")
    os.symlink("loop", tiles / "patient_A" / "loop")
    with unprivileged():
        result = c.scan(out)
    assert result.exit_code == EXIT_TILES_FAILED, result.output
    errors = {Path(r["tile"]).name: r["error"] for r in committed_rows(out) if r["status"] != "ok"}
    assert errors == {
        "locked": f"{tiles / 'locked'}: cannot read it (Permission denied)",
        "broken.png": f"{tiles / 'patient_A' / 'broken.png'}: broken symbolic link (its target "
                      "does not exist)",
        "loop": f"{tiles / 'patient_A' / 'loop'}: symbolic link loop",
    }  # fmt: skip
    assert "3 tile(s) failed" in result.output


def torn_detections(c: Case) -> None:
    clean, out = c.tmp / "clean", c.tmp / "out"
    c.scan(clean)
    c.scan(out)
    lines = (out / "detections.jsonl").read_bytes().splitlines(keepends=True)
    (out / "detections.jsonl").write_bytes(b"".join(lines[:-1]) + lines[-1][:30])  # torn
    assert c.scan(out).exit_code == 0 and outputs(out) == outputs(clean)
    with open(out / "detections.jsonl", "ab") as f:
        f.write(b"garbage\n")
    assert c.scan(out).exit_code == 0 and outputs(out) == outputs(clean)
    summary = json.loads((out / "summary.json").read_text())
    assert sum(s["counts"]["nucleated"] for s in summary["samples"]) == 24


def formula_names(c: Case) -> None:
    name = '=HYPERLINK("evil.example","x")'  # a folder name: no slash
    tiles, out = c.tmp / "hostile", c.tmp / "out"
    shutil.copytree(c.tiles / "patient_A", tiles / name)
    shutil.copytree(c.tiles / "patient_B", tiles / "-patient_B")
    assert c.scan(out, tiles=tiles).exit_code == 0
    with open(out / "tiles.csv", newline="") as f:
        cells = [cell for row in csv.reader(f) for cell in row]
    assert not [cell for cell in cells if cell.startswith(("=", "+", "-", "@"))]
    assert f"'{name}" in cells and "'-patient_B" in cells
    again = c.scan(out, tiles=tiles)  # the rows map back to their tiles: nothing to rescan
    assert "0 tiles scanned (6 already done)" in again.output
    result = cli("report", out, "--out", c.tmp / "rep" / "report.html")
    assert result.exit_code == 0, result.output
    with open(c.tmp / "rep" / "report-samples.csv", newline="") as f:
        samples = [row["sample"] for row in csv.DictReader(f)]
    assert sorted(samples) == sorted([f"'{name}", "'-patient_B"])


CASES: dict[str, Callable[[Case], None]] = {
    "disk full in the middle of a scan": disk_full,
    "two scans into one --out": second_writer,
    "--out is a file": out_is_a_file,
    "--out is read-only": out_is_read_only,
    "model config threshold NaN, -5, 'NaN'": hostile_model_configs,
    "config changed under a shipped name": changed_shipped_config,
    "lab file with an analyte twice": duplicate_analytes,
    "YAML billion-laughs alias bomb": yaml_alias_bomb,
    "1e999999999 ng/mL": huge_exponent,
    "a large lab file": large_lab_file,
    "unreadable folder, broken and looping symlinks": unwalkable_sources,
    "torn or garbage last line of detections.jsonl": torn_detections,
    "folder or sample named =HYPERLINK(...)": formula_names,
}


@pytest.mark.parametrize("row", list(CASES))
def test_issue_13_table(
    row: str, tiny_model_dir: Path, tile_folder: Path, tmp_path: Path,
    failing_writes: FailingWrites, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    CASES[row](Case(tiny_model_dir, tile_folder, tmp_path, failing_writes, monkeypatch))
