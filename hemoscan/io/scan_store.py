"""The one writer of a scan's output folder, so that neither a kill nor a failed write loses
anything finished. The files' formats, and reading them, are in :mod:`hemoscan.io.scan_files`.

**One writer.** A :class:`ScanStore` holds the folder's lock (:class:`OutputLock`) from the
moment it opens until it closes: a second writer is refused at once.

**Commits.** Each finished tile's detections are buffered, then written to
``detections.jsonl`` and fsynced; only then are the ``tiles.csv`` rows of those tiles, which
mark them done, written and fsynced. Commits come in groups of at most ``sync_tiles`` tiles
and ``sync_seconds`` apart (a flush and an fsync of each file per group, not per tile, which
would cost more than the network on a fast scan). A killed run or a power cut therefore loses
at most the last group's rows, and those tiles are scanned again.

**Failed writes.** Any ``OSError`` while writing (disk full, file-size limit, I/O error) raises
:class:`~hemoscan.errors.OutputWriteError` naming the file and the reason, and nothing more is
written: no row is committed whose detections are not fsynced, so the folder stays a valid
partial scan that the same command resumes.

**Opening** an existing folder verifies it, streaming: torn or malformed rows and lines are
dropped; a committed ok tile whose detection lines do not match its row's per-class counts
(lines lost to a failed write, a torn or garbage line) loses its row and is scanned again;
detections of tiles without a row are removed; a tile is never listed twice. The files are
rewritten (atomically, in the current layout) only when something was dropped or a row is
in an older layout. Memory does not grow with the number of detections, and by under 150
bytes per tile: finished tiles are indexed by a 16-byte digest of ``(sample, tile)`` in a
sorted array (17 bytes per tile; while opening, their per-class counts too). ``run.json`` is
written when the folder is new; resuming with settings that change counts is refused.
"""

from __future__ import annotations

import csv
import errno
import hashlib
import json
import logging
import os
import time
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from hemoscan.datamodel import CELL_CLASSES, TileResult
from hemoscan.errors import OutputDirError, OutputWriteError
from hemoscan.io.files import atomic_write_json, atomic_writer
from hemoscan.io.output_lock import OutputLock
from hemoscan.io.scan_files import (
    CLASS_INDEX,
    DETECTIONS,
    NAME_ERRORS,
    RUN,
    TILE_COLUMNS,
    TILES,
    TILES_HEADER,
    current_cells,
    detection_lines,
    parse_detection_line,
    parse_tile_row,
    raw_tile_rows,
    tile_row_line,
    utc_now,
)

log = logging.getLogger(__name__)

#: Buffered detection bytes that force a commit (bounds memory on tiles with many cells).
_MAX_PENDING_BYTES = 8 << 20


@contextmanager
def guard_writes(path: Path) -> Iterator[None]:
    """Turn an ``OSError`` raised while writing scan outputs under ``path`` into an
    :class:`~hemoscan.errors.OutputWriteError` saying what failed, where, and how to resume."""
    try:
        yield
    except OutputDirError:
        raise
    except OSError as e:
        raise OutputWriteError(_write_failure(Path(e.filename or path), e)) from e


def _write_failure(path: Path, e: OSError) -> str:
    code = errno.errorcode.get(e.errno or 0, "")
    reason = f"{e.strerror or e}" + (f" [{code}]" if code else "")
    return (
        f"cannot write {path}: {reason}. The scan stopped; every tile marked done in "
        f"{TILES} has its detections on disk. Fix the cause (free space, raise the file-size "
        "limit), then re-run the same command: it resumes where it stopped."
    )


def _digest(sample: str, tile: str) -> bytes:
    key = f"{sample}\0{tile}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(key, digest_size=16).digest()


def _has_current_header(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.readline() == TILES_HEADER


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        if f.seek(0, os.SEEK_END) == 0:
            return True
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"


class FinishedIndex:
    """Which ``(sample, tile)`` keys a folder holds, and whether each is ok: 16-byte blake2b
    digests (``S16`` numpy array, sorted here) and flags, 17 bytes per tile."""

    def __init__(self, digests: list[bytes] | np.ndarray, ok: list[bool] | np.ndarray) -> None:
        digests = np.asarray(digests, dtype="S16")
        order = np.argsort(digests, kind="stable")
        self._digests = digests[order]
        self._ok = np.asarray(ok, dtype=bool)[order]

    @classmethod
    def from_keys(cls, keys: dict[bytes, bool]) -> FinishedIndex:
        return cls(list(keys), list(keys.values()))

    def __len__(self) -> int:
        return len(self._digests)

    def position(self, sample: str, tile: str) -> int:
        """Where ``(sample, tile)`` sits in the sorted index, or -1."""
        key = np.array(_digest(sample, tile), dtype="S16")
        i = int(np.searchsorted(self._digests, key))
        return i if i < len(self._digests) and self._digests[i] == key else -1

    def ok_at(self, position: int) -> bool:
        return bool(self._ok[position])

    def get(self, sample: str, tile: str) -> bool | None:
        """``True`` / ``False`` (finished ok / failed), or ``None`` when not finished."""
        i = self.position(sample, tile)
        return None if i < 0 else bool(self._ok[i])

    def subset(self, keep: np.ndarray) -> FinishedIndex:
        """The index of the entries where ``keep`` (by sorted position) is true."""
        return FinishedIndex(self._digests[keep], self._ok[keep])


class ScanStore:
    """The one writer of an output folder (see the module docstring).

    ``finished`` indexes the tiles the folder held, verified, when opened (tiles appended
    since are not added: a scan never meets the same tile twice); ``rescanned`` counts the
    committed tiles found incomplete on opening, which are scanned again. ``tiles.csv``
    rows are committed every ``sync_tiles`` tiles or ``sync_seconds`` seconds, whichever
    comes first (0: every tile). Raises :class:`~hemoscan.errors.OutputDirError` when the
    folder cannot be used or another scan holds it, and
    :class:`~hemoscan.errors.OutputWriteError` when a write fails.
    """

    def __init__(
        self,
        out_dir: Path,
        run_settings: dict[str, Any],
        retry_failed: bool = False,
        sync_seconds: float = 1.0,
        sync_tiles: int = 64,
    ):
        self.dir = Path(out_dir)
        self.sync_seconds, self.sync_tiles = sync_seconds, sync_tiles
        self._pending_lines: list[bytes] = []
        self._pending_rows: list[bytes] = []
        self._pending_bytes = 0
        self._last_sync = time.monotonic()
        self._failure = ""
        self._fds: dict[str, int] = {}
        self._lock = OutputLock(self.dir)
        try:
            self._check_run(run_settings)
            self.finished = self._verify(retry_failed)
            for name in (DETECTIONS, TILES):
                with self._writing(name):
                    self._fds[name] = os.open(
                        self.dir / name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644
                    )
            if os.fstat(self._fds[TILES]).st_size == 0:
                with self._writing(TILES):
                    _write_all(self._fds[TILES], TILES_HEADER)
        except BaseException:
            self._release()
            raise

    @contextmanager
    def _writing(self, name: str) -> Iterator[None]:
        """Any ``OSError`` in the block fails the store: nothing more is written."""
        try:
            with guard_writes(self.dir / name):
                yield
        except OutputWriteError as e:
            self._failure = str(e)
            raise

    def _check_run(self, settings: dict[str, Any]) -> None:
        path = self.dir / RUN
        if path.exists():
            try:
                run = json.loads(path.read_text(encoding="utf-8"))
                previous, self.started_at = run["settings"], str(run["started_at"])
                if not isinstance(previous, dict):
                    raise TypeError("settings is not an object")
            except (OSError, ValueError, KeyError, TypeError) as e:
                raise OutputDirError(
                    f"{path}: unreadable or corrupt ({e}); write to a new --out folder"
                ) from None
            changed = sorted(k for k in settings if previous.get(k) != settings[k])
            if changed:
                details = "; ".join(f"{k}: {previous.get(k)!r} -> {settings[k]!r}" for k in changed)
                model = (f" It was scanned with the model {previous.get('model_name')!r}: pass "
                         "--model with that shipped model's name or its folder to resume it."
                         if "model_name" in changed else "")  # fmt: skip
                raise OutputDirError(
                    f"{self.dir}: holds a scan made with other settings ({details}).{model} "
                    "Resume with the same settings, or write to a new --out folder."
                )
        else:
            if (self.dir / TILES).exists() or (self.dir / DETECTIONS).exists():
                raise OutputDirError(
                    f"{self.dir}: holds scan files without {RUN}; use a new folder"
                )
            self.started_at = utc_now()
            run = {"settings": settings, "started_at": self.started_at, "working_dir": os.getcwd()}
            with self._writing(RUN):
                atomic_write_json(path, run, indent=2)

    def _verify(self, retry_failed: bool) -> FinishedIndex:
        """Check what the folder holds against ``tiles.csv`` (see the module docstring),
        rewrite both files if anything is dropped, and return the index of what is kept."""
        tiles_path, det_path = self.dir / TILES, self.dir / DETECTIONS
        dirty = tiles_path.exists() and not (
            _ends_with_newline(tiles_path) and _has_current_header(tiles_path)
        )
        digests, ok, counts = bytearray(), bytearray(), array("q")
        for raw in raw_tile_rows(tiles_path):
            row = parse_tile_row(raw)
            if row is None or (retry_failed and not row.ok):
                dirty = True
                continue
            dirty |= current_cells(raw) != [raw.get(c) for c in TILE_COLUMNS]
            digests += _digest(row.sample, row.tile)
            ok.append(row.ok)
            counts.extend(row.counts)
        all_digests = np.frombuffer(bytes(digests), "S16")
        keys, first = np.unique(all_digests, return_index=True)  # sorted; first occurrences
        dirty |= len(keys) < len(all_digests)
        index = FinishedIndex(keys, np.frombuffer(bytes(ok), bool)[first])
        want = np.frombuffer(counts, np.int64).reshape(-1, len(CELL_CLASSES))[first]
        del digests, ok, counts, all_digests, first
        found = np.zeros_like(want)
        if det_path.exists():
            dirty |= not _ends_with_newline(det_path)
            for tile, cls in self._detection_slots(index):
                if tile < 0:
                    dirty = True
                else:
                    found[tile, cls] += 1
        complete = (found == want).all(axis=1)
        self.rescanned = int(len(index) - complete.sum())
        if self.rescanned:
            log.warning("%s: %d committed tile(s) lack detections; scanning them again",
                        self.dir, self.rescanned)  # fmt: skip
            index, dirty = index.subset(complete), True
        if dirty:
            self._rewrite(index, retry_failed)
        return index

    def _detection_slots(self, index: FinishedIndex) -> Iterator[tuple[int, int]]:
        """Per line of ``detections.jsonl``: ``(position of its ok tile in index, class)``, or
        ``(-1, -1)`` for a line to drop (torn, garbage, or of no ok tile of ``index``)."""
        last: tuple[str, str] | None = None
        position = -1
        with open(self.dir / DETECTIONS, "rb") as f:
            for line in f:
                parsed = parse_detection_line(line) if line.endswith(b"\n") else None
                if parsed is None:
                    yield -1, -1
                    continue
                sample, tile, det = parsed
                if (sample, tile) != last:
                    last, position = (sample, tile), index.position(sample, tile)
                    if position >= 0 and not index.ok_at(position):
                        position = -1
                yield (position, CLASS_INDEX[det.label]) if position >= 0 else (-1, -1)

    def _rewrite(self, index: FinishedIndex, retry_failed: bool) -> None:
        """Rewrite ``tiles.csv`` with the rows of ``index`` (first occurrences), then
        ``detections.jsonl`` with the lines of its ok tiles; each atomically."""
        tiles_path, det_path = self.dir / TILES, self.dir / DETECTIONS
        written = np.zeros(len(index), bool)
        with self._writing(TILES), atomic_writer(tiles_path) as dst:
            dst.reconfigure(errors=NAME_ERRORS)
            writer = csv.writer(dst)
            writer.writerow(TILE_COLUMNS)
            for raw in raw_tile_rows(tiles_path):
                row = parse_tile_row(raw)
                if row is None or (retry_failed and not row.ok):
                    continue
                i = index.position(row.sample, row.tile)
                if i >= 0 and not written[i]:
                    written[i] = True
                    writer.writerow(current_cells(raw))
        if not det_path.exists():
            return
        with self._writing(DETECTIONS), open(det_path, "rb") as src, \
                atomic_writer(det_path) as dst:  # fmt: skip
            for line in src:
                parsed = parse_detection_line(line) if line.endswith(b"\n") else None
                if parsed is not None and index.get(parsed[0], parsed[1]):
                    dst.write(line.decode("utf-8"))

    def record_slides(self, slides: list[dict[str, Any]]) -> None:
        """Record in ``run.json`` (key ``slides``) how each whole-slide image is scanned: one
        record per ``(sample, slide)``, a newer one replacing an older one."""
        if not slides:
            return
        path = self.dir / RUN
        run = json.loads(path.read_text())
        records = {(r["sample"], r["slide"]): r for r in run.get("slides", [])}
        records.update({(r["sample"], r["slide"]): r for r in slides})
        run["slides"] = list(records.values())
        with self._writing(RUN):
            atomic_write_json(path, run, indent=2)

    def is_finished(self, sample: str, tile: str) -> bool:
        return self.finished.get(sample, tile) is not None

    def append(self, result: TileResult) -> None:
        """Record one finished tile: its detections and its row (which marks it done) are
        buffered and committed together by :meth:`sync`, detections first."""
        self._check_usable()
        lines, row = detection_lines(result), tile_row_line(result)
        self._pending_lines.append(lines)
        self._pending_rows.append(row)
        self._pending_bytes += len(lines) + len(row)
        if (
            len(self._pending_rows) >= self.sync_tiles
            or self._pending_bytes >= _MAX_PENDING_BYTES
            or time.monotonic() - self._last_sync >= self.sync_seconds
        ):
            self.sync()

    def sync(self) -> None:
        """Commit: the buffered detections to disk (fsync) first, then the rows of their tiles."""
        self._check_usable()
        if self._pending_rows:
            with self._writing(DETECTIONS):
                _write_all(self._fds[DETECTIONS], b"".join(self._pending_lines))
                os.fsync(self._fds[DETECTIONS])
            self._pending_lines.clear()
            with self._writing(TILES):
                _write_all(self._fds[TILES], b"".join(self._pending_rows))
                os.fsync(self._fds[TILES])
            self._pending_rows.clear()
            self._pending_bytes = 0
        self._last_sync = time.monotonic()

    def _check_usable(self) -> None:
        if self._failure:
            raise OutputWriteError(self._failure)
        if not self._fds:
            raise OutputDirError(f"{self.dir}: the scan store is closed")

    def close(self) -> None:
        """Commit what is buffered (unless a write failed), close the files, drop the lock."""
        try:
            if self._fds and not self._failure:
                self.sync()
        finally:
            self._release()

    def _release(self) -> None:
        fds, self._fds = self._fds, {}
        for fd in fds.values():
            try:
                os.close(fd)
            except OSError:
                pass  # nothing is buffered here: a failed close loses nothing committed
        self._lock.release()

    def __enter__(self) -> ScanStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data`` to ``fd`` (``os.write`` may write less than asked)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
