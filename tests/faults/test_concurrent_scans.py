"""One writer per output folder: a second scan is refused at once while the first runs (also
under the Dask engine, whose client holds the lock); reports read a folder safely meanwhile."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hemoscan.cli.app import EXIT_USAGE, app
from hemoscan.errors import OutputDirError
from hemoscan.io.output_lock import OutputLock
from hemoscan.pipeline import ScanOptions, scan

runner = CliRunner()


def test_the_same_command_twice_is_refused_and_changes_nothing(
    tiny_model_dir: Path, tile_folder: Path, tmp_path: Path
) -> None:
    clean, out = tmp_path / "clean", tmp_path / "out"
    options = ScanOptions(model=str(tiny_model_dir))
    scan([str(tile_folder)], clean, options)
    scan([str(tile_folder / "patient_A")], out, options)  # a first, finished part
    seen: list = []

    def meanwhile(_) -> None:  # while the scan of `out` runs, the same command again, a report
        if seen:
            return
        args = ["scan", str(tile_folder), "--out", str(out), "--model", str(tiny_model_dir), "-q"]
        seen.append(runner.invoke(app, args))
        report = tmp_path / "report" / "r.html"
        seen.append(runner.invoke(app, ["report", str(out), "--out", str(report)]))

    summary = scan([str(tile_folder)], out, options, progress=meanwhile)
    second, report = seen
    assert second.exit_code == EXIT_USAGE and isinstance(second.exception, SystemExit)
    host = socket.gethostname()
    assert f"{out}: another hemoscan scan is writing to this folder (PID {os.getpid()} on host " \
           f"'{host}')" in second.output  # fmt: skip
    assert report.exit_code == 0, report.output
    assert summary.tiles_scanned_now == 3
    assert (out / "detections.jsonl").read_bytes() == (clean / "detections.jsonl").read_bytes()
    assert summary.tiles_total == 6 and len((out / "tiles.csv").read_text().splitlines()) == 7


def test_the_dask_client_holds_the_lock(
    tiny_model_dir: Path, tile_folder: Path, tmp_path: Path
) -> None:
    distributed = pytest.importorskip("distributed")
    out = tmp_path / "out"
    refusals: list[str] = []

    def try_to_write(_) -> None:
        try:
            OutputLock(out).release()
        except OutputDirError as e:
            refusals.append(str(e))

    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=False,
                                  dashboard_address=":0") as cluster:  # fmt: skip
        options = ScanOptions(model=str(tiny_model_dir), engine="dask",
                              scheduler=cluster.scheduler_address)  # fmt: skip
        scan([str(tile_folder)], out, options, progress=try_to_write)
    assert len(refusals) == 6 and all("another hemoscan scan" in r for r in refusals)
    OutputLock(out).release()  # free once the scan returned
    assert json.loads((out / "summary.json").read_text())["samples"][0]["tiles_scanned"] == 3
