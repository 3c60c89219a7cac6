"""A failed write (disk full, file-size limit, I/O error) at any step stops the scan with a
clear error, marks nothing done that is not on disk, and the same command then resumes to
exactly what a clean run writes."""

from __future__ import annotations

import errno
import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from hemoscan.errors import OutputWriteError
from hemoscan.io.scan_store import ScanStore
from hemoscan.pipeline import ScanOptions, scan
from tests.conftest import disc_image, write_image
from tests.faults.conftest import FailingWrites, assert_committed_tiles_are_whole, outputs


def _ends(name: str):
    return lambda path: path.endswith(name)


#: (step, patched function, which file, successful calls before the failure, errno, partial)
STEPS = [
    ("run.json", "replace", _ends("run.json"), 0, errno.ENOSPC, False),
    ("detections write", "write", _ends("detections.jsonl"), 2, errno.ENOSPC, False),
    ("detections partial write", "write", _ends("detections.jsonl"), 2, errno.EFBIG, True),
    ("detections fsync", "fsync", _ends("detections.jsonl"), 2, errno.EIO, False),
    ("tiles.csv write", "write", _ends("tiles.csv"), 3, errno.ENOSPC, False),
    ("tiles.csv partial write", "write", _ends("tiles.csv"), 3, errno.ENOSPC, True),
    ("tiles.csv fsync", "fsync", _ends("tiles.csv"), 2, errno.EIO, False),
    ("overlay", "write_bytes", lambda p: "/overlays/" in p, 2, errno.ENOSPC, False),
    ("summary.json", "replace", _ends("summary.json"), 0, errno.ENOSPC, False),
    ("geojson export", "replace", _ends(".geojson"), 1, errno.ENOSPC, False),
]


@pytest.fixture
def commit_every_tile(monkeypatch: pytest.MonkeyPatch) -> None:
    """Commit after every tile, so a failure falls between commits, not before the first."""
    monkeypatch.setattr(ScanStore.__init__, "__defaults__", (False, 0.0, 1))


@pytest.mark.parametrize(("step", "function", "match", "after", "code", "partial"), STEPS,
                         ids=[s[0] for s in STEPS])  # fmt: skip
def test_a_failed_write_at_any_step_loses_nothing(
    tiny_model_dir: Path, tile_folder: Path, tmp_path: Path, failing_writes: FailingWrites,
    commit_every_tile: None, step: str, function: str, match, after: int, code: int,
    partial: bool,
) -> None:  # fmt: skip
    options = ScanOptions(model=str(tiny_model_dir), save_overlays=True, exports=("geojson",))
    clean, out = tmp_path / "clean", tmp_path / "out"
    scan([str(tile_folder)], clean, options)
    failing_writes.on(function, match, after, code, partial)
    with pytest.raises(OutputWriteError) as info:
        scan([str(tile_folder)], out, options)
    assert failing_writes.failed == 1, "nothing is written after the first failure"
    message = str(info.value)
    assert os.strerror(code) in message and errno.errorcode[code] in message
    assert str(out) in message and "re-run the same command" in message
    if (out / "tiles.csv").exists():
        assert_committed_tiles_are_whole(out)
    failing_writes.monkeypatch.undo()
    again = scan([str(tile_folder)], out, options)
    assert again.tiles_failed == 0
    assert outputs(out) == outputs(clean)
    assert sorted(p.name for p in (out / "overlays").iterdir()) == sorted(
        p.name for p in (clean / "overlays").iterdir()
    )
    assert len(list((out / "geojson").iterdir())) == 6


def test_a_failed_repair_on_opening_changes_nothing(
    tiny_model_dir: Path, tile_folder: Path, tmp_path: Path, failing_writes: FailingWrites
) -> None:
    options = ScanOptions(model=str(tiny_model_dir))
    out = tmp_path / "out"
    scan([str(tile_folder)], out, options)
    clean = outputs(out)
    with open(out / "detections.jsonl", "ab") as f:
        f.write(b'{"garbage": tr')  # needs a repair, i.e. a rewrite
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    failing_writes.on("replace", _ends("detections.jsonl"), 0, errno.ENOSPC)
    with pytest.raises(OutputWriteError, match="No space left on device"):
        scan([str(tile_folder)], out, options)
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after.keys() == before.keys()  # no temporary file left behind
    assert after["detections.jsonl"] == before["detections.jsonl"]
    failing_writes.monkeypatch.undo()
    scan([str(tile_folder)], out, options)
    assert outputs(out) == clean


def test_a_real_file_size_limit_stops_the_cli_cleanly(tiny_model_dir: Path, tmp_path: Path) -> None:
    """``RLIMIT_FSIZE`` in a child process: the kernel refuses writes past the limit (EFBIG)."""
    tiles = tmp_path / "tiles"
    for i in range(12):
        write_image(tiles / f"t{i:02d}.png", disc_image(160, 128, 3, seed=i)[0])
    clean, out = tmp_path / "clean", tmp_path / "out"
    options = ScanOptions(model=str(tiny_model_dir))
    scan([str(tiles)], clean, options)
    limit = (clean / "detections.jsonl").stat().st_size // 2

    def limit_file_size() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    cmd = [sys.executable, "-m", "hemoscan.cli.app", "scan", str(tiles), "--model",
           str(tiny_model_dir), "--out", str(out), "-q"]  # fmt: skip
    failed = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=limit_file_size,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})  # fmt: skip
    assert failed.returncode == 2, failed.stderr
    assert "Traceback" not in failed.stderr + failed.stdout
    assert "File too large [EFBIG]" in failed.stderr and "re-run the same command" in failed.stderr
    assert (out / "detections.jsonl").stat().st_size <= limit
    assert assert_committed_tiles_are_whole(out) < 12
    assert scan([str(tiles)], out, options).tiles_failed == 0  # the same command, resumed
    assert outputs(out) == outputs(clean)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["samples"][0]["tiles_scanned"] == 12
