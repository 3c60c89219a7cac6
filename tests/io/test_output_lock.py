"""OutputLock: one writer per output folder, refused at once, gone with its process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hemoscan.errors import OutputDirError
from hemoscan.io.output_lock import LOCK_FILE, OutputLock
from tests.conftest import unprivileged

ROOT = Path(__file__).resolve().parents[2]
HOLD = ("import sys, time; from pathlib import Path; from hemoscan.io.output_lock import "
        "OutputLock; lock = OutputLock(Path(sys.argv[1])); print('locked', flush=True); "
        "time.sleep(600)")  # fmt: skip


def test_the_lock_names_its_holder_and_dies_with_it(tmp_path: Path) -> None:
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE,
                              text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputDirError, match=rf"another hemoscan scan .*PID {holder.pid} on host"):
            OutputLock(out)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    with OutputLock(out):  # no stale lock after a kill
        assert (out / LOCK_FILE).exists()


def test_released_locks_can_be_taken_again(tmp_path: Path) -> None:
    lock = OutputLock(tmp_path / "a" / "b")  # parents are created
    lock.release()
    lock.release()
    with OutputLock(tmp_path / "a" / "b"):
        pass


def test_unusable_output_folders_are_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutputDirError, match="is a file, not a folder"):
        OutputLock(tmp_path / "file")
    with pytest.raises(OutputDirError, match="cannot create the output folder: part of its path"):
        OutputLock(tmp_path / "file" / "out")
    read_only = tmp_path / "read-only"
    read_only.mkdir(mode=0o555)
    with unprivileged(), pytest.raises(OutputDirError, match="cannot write in the output folder"):
        OutputLock(read_only)
    with unprivileged(), pytest.raises(OutputDirError, match="cannot create the output folder"):
        OutputLock(read_only / "new")
