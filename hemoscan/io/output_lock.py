"""One writer per output folder: an OS lock held for the whole scan.

:class:`OutputLock` creates the folder if needed and takes an exclusive, non-blocking
``flock`` on ``DIR/.hemoscan.lock``, writing the holder's PID, host and start time into it. A
second writer is refused at once with :class:`~hemoscan.errors.OutputDirError` naming the
folder and that holder. The kernel drops the lock when its file is closed, which happens when
the holding process exits however it exits (even ``SIGKILL``), so no stale lock is ever left:
the lock file itself stays and is never deleted (deleting it would let two writers lock two
different files). Readers (``hemoscan report``) take no lock: the scan store only appends
whole lines and replaces files atomically, so they always read a consistent folder.

Locks are advisory and local to one machine's kernel; on NFS, Linux maps ``flock`` to NFS
byte-range locks, which hold across clients only where the server supports locking.
"""

from __future__ import annotations

import errno
import json
import os
import socket
from pathlib import Path

try:
    import fcntl
except ImportError:  # not POSIX: no OS lock; output folders are unguarded
    fcntl = None  # type: ignore[assignment]

from hemoscan.errors import OutputDirError

LOCK_FILE = ".hemoscan.lock"


def prepare_output_dir(folder: Path) -> None:
    """Create ``folder`` (and its parents), or say clearly why it cannot be an output folder."""
    if folder.exists() and not folder.is_dir():
        raise OutputDirError(f"{folder}: is a file, not a folder; give a folder for the outputs")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise OutputDirError(
            f"{folder}: cannot create the output folder: part of its path is a file"
        ) from None
    except OSError as e:
        raise OutputDirError(
            f"{folder}: cannot create the output folder ({e.strerror or e})"
        ) from None


class OutputLock:
    """An exclusive lock on an output folder, held from construction until :meth:`release`."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        prepare_output_dir(self.folder)
        path = self.folder / LOCK_FILE
        try:
            self._fd: int | None = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise OutputDirError(
                f"{self.folder}: cannot write in the output folder ({e.strerror or e}); "
                "give a folder you can write to"
            ) from None
        if fcntl is None:  # not POSIX
            return
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = _read_holder(self._fd)
            self._close()
            if e.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise OutputDirError(f"{path}: cannot lock ({e.strerror or e})") from None
            raise OutputDirError(
                f"{self.folder}: another hemoscan scan is writing to this folder ({holder}); "
                "wait for it to finish, or write to another --out folder"
            ) from None
        record = {"pid": os.getpid(), "host": socket.gethostname()}
        try:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, (json.dumps(record) + "\n").encode(), 0)
        except OSError:
            pass  # who holds the lock is a courtesy to a refused writer; the lock is what counts

    def release(self) -> None:
        """Drop the lock (idempotent)."""
        self._close()

    def _close(self) -> None:
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)

    def __enter__(self) -> OutputLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def scan_running(folder: Path) -> bool | None:
    """Whether a scan holds ``folder``'s lock now, without taking any lock (a reader must never
    make a starting scan fail): read from ``/proc/locks`` on Linux; ``None`` where unknown."""
    try:
        st = os.stat(Path(folder) / LOCK_FILE)
    except OSError:
        return False
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            table = f.read()
    except OSError:
        return None
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    return any("FLOCK" in line and key in line.split() for line in table.splitlines())


def _read_holder(fd: int) -> str:
    try:
        record = json.loads(os.pread(fd, 4096, 0) or b"{}")
        return f"PID {int(record['pid'])} on host {str(record['host'])!r}"
    except (OSError, ValueError, KeyError, TypeError):
        return "PID and host not yet recorded"
