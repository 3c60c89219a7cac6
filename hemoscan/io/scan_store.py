"""The files of a scan's output folder, written so that neither a kill nor a failed write
loses anything finished.

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
rewritten (atomically) only when something was dropped. Memory does not grow with the
number of detections, and by under 150 bytes per tile: finished tiles are indexed by a 16-byte
digest of ``(sample, tile)`` in a sorted array (17 bytes per tile; while opening, their
per-class counts too). ``run.json`` records the
settings that change counts (resuming with different ones is refused), the start time, the
working folder that relative tile paths are relative to, and how each whole-slide image was
scanned (``slides``).

Text cells of ``tiles.csv`` are spreadsheet-safe (:mod:`hemoscan.io.spreadsheet`) and read
back exactly; file names that are not valid UTF-8 are kept byte for byte (surrogate escapes).
"""

from __future__ import annotations

import csv
import errno
import hashlib
import io
import json
import logging
import os
import time
from array import array
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np

from hemoscan.datamodel import CELL_CLASSES, Detection, ScaleEstimate, TileResult, detection_id
from hemoscan.errors import OutputDirError, OutputWriteError
from hemoscan.io.files import atomic_write_json, atomic_writer
from hemoscan.io.output_lock import OutputLock
from hemoscan.io.spreadsheet import neutralise, restore

log = logging.getLogger(__name__)

DETECTIONS = "detections.jsonl"
TILES = "tiles.csv"
SUMMARY = "summary.json"
RUN = "run.json"
#: Columns every tiles.csv has had; the scale columns came later and may be missing (empty).
_REQUIRED_COLUMNS = ("sample", "tile", "status", "error", "width", "height", *CELL_CLASSES, "ms")
SCALE_COLUMNS = ("scale", "scale_source", "scale_estimate")
TILE_COLUMNS = (*_REQUIRED_COLUMNS, *SCALE_COLUMNS)
#: ``tiles.csv`` columns holding text a user or the file system supplied (spreadsheet-safe).
_TEXT_COLUMNS = frozenset({"sample", "tile", "error"})
_CLASS_INDEX = {c: i for i, c in enumerate(CELL_CLASSES)}
#: Buffered detection bytes that force a commit (bounds memory on tiles with many cells).
_MAX_PENDING_BYTES = 8 << 20
#: How text files of the folder encode file names that are not valid UTF-8.
_ERRORS = "surrogateescape"

TileKey = tuple[str, str]  # (sample, tile)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


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


def _complete_lines(f: IO[str]) -> Iterator[str]:
    """Lines of the text file ``f`` that end in a newline (a torn last line is dropped)."""
    for line in f:
        if line.endswith("\n"):
            yield line


def _tile_rows(path: Path) -> Iterator[dict[str, str]]:
    """Complete ``tiles.csv`` rows of ``path`` as written (none if it does not exist),
    streamed; a row torn inside a quoted cell ends the file."""
    if not path.exists():
        return
    with open(path, encoding="utf-8", errors=_ERRORS, newline="") as f:
        try:
            yield from csv.DictReader(_complete_lines(f))
        except csv.Error:
            return


def _digest(sample: str, tile: str) -> bytes:
    key = f"{sample}\0{tile}".encode("utf-8", "surrogatepass")
    return hashlib.blake2b(key, digest_size=16).digest()


class _Row(NamedTuple):
    """A well-formed ``tiles.csv`` row, text cells restored."""

    sample: str
    tile: str
    ok: bool
    counts: tuple[int, ...]


def _parse_row(row: dict[str, Any]) -> _Row | None:
    """The row, or ``None`` when it is torn or malformed."""
    if None in row or any(not isinstance(row.get(c), str) for c in _REQUIRED_COLUMNS):
        return None
    if row["status"] not in ("ok", "error"):
        return None
    try:
        counts = tuple(int(row[c] or 0) for c in CELL_CLASSES)
    except ValueError:
        return None
    return _Row(restore(row["sample"]), restore(row["tile"]), row["status"] == "ok", counts)


def _safe_cells(row: dict[str, str]) -> list[str]:
    """A read row's cells as this version writes them (older folders had raw text cells and
    no scale columns)."""
    cells = [row.get(c) or "" for c in TILE_COLUMNS]
    return [neutralise(restore(v)) if c in _TEXT_COLUMNS else v for c, v in zip(TILE_COLUMNS, cells)]


def _csv_line(cells: list[Any]) -> bytes:
    buf = io.StringIO()
    csv.writer(buf).writerow(cells)
    return buf.getvalue().encode("utf-8", _ERRORS)


def _detection_line(sample: str, tile: str, ordinal: int, det: Detection) -> bytes:
    record = {"id": detection_id(sample, tile, ordinal), "sample": sample, "tile": tile,
              **det.to_dict()}  # fmt: skip
    # lone surrogates (non-UTF-8 file names) become \udcXX escapes, which json reads back
    return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace")


def _parse_detection(line: bytes | str) -> tuple[str, str, Detection] | None:
    """``(sample, tile, detection)`` of one line of ``detections.jsonl``, or ``None``."""
    try:
        d = json.loads(line.decode("utf-8") if isinstance(line, bytes) else line)
        det = Detection.from_dict(d)
        sample, tile = d["sample"], d["tile"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    if not (isinstance(sample, str) and isinstance(tile, str)) or det.label not in _CLASS_INDEX:
        return None
    return sample, tile, det


def _has_current_header(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.readline() == _csv_line(list(TILE_COLUMNS))


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


def _scale_cells(scale: ScaleEstimate | None) -> list[Any]:
    if scale is None:
        return ["", "", ""]
    estimate = "" if scale.estimate is None else round(scale.estimate, 4)
    return [round(scale.scale, 4), scale.source, estimate]


def _row_to_result(row: dict[str, str]) -> TileResult:
    scale = None
    if row.get("scale"):
        estimate = row.get("scale_estimate")
        scale = ScaleEstimate(
            float(row["scale"]), row.get("scale_source") or "", float(estimate) if estimate else None
        )
    return TileResult(
        sample=restore(row["sample"]),
        tile=restore(row["tile"]),
        status=row["status"],
        error=restore(row["error"]),
        width=int(row["width"] or 0),
        height=int(row["height"] or 0),
        ms=float(row["ms"] or 0),
        scale=scale,
    )


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
                    _write_all(self._fds[TILES], _csv_line(list(TILE_COLUMNS)))
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
                raise OutputDirError(
                    f"{self.dir}: holds a scan made with other settings ({details}). "
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
        for raw in _tile_rows(tiles_path):
            row = _parse_row(raw)
            if row is None or (retry_failed and not row.ok):
                dirty = True
                continue
            dirty |= _safe_cells(raw) != [raw.get(c) for c in TILE_COLUMNS]
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
                parsed = _parse_detection(line) if line.endswith(b"\n") else None
                if parsed is None:
                    yield -1, -1
                    continue
                sample, tile, det = parsed
                if (sample, tile) != last:
                    last, position = (sample, tile), index.position(sample, tile)
                    if position >= 0 and not index.ok_at(position):
                        position = -1
                yield (position, _CLASS_INDEX[det.label]) if position >= 0 else (-1, -1)

    def _rewrite(self, index: FinishedIndex, retry_failed: bool) -> None:
        """Rewrite ``tiles.csv`` with the rows of ``index`` (first occurrences), then
        ``detections.jsonl`` with the lines of its ok tiles; each atomically."""
        tiles_path, det_path = self.dir / TILES, self.dir / DETECTIONS
        written = np.zeros(len(index), bool)
        with self._writing(TILES), atomic_writer(tiles_path) as dst:
            dst.reconfigure(errors=_ERRORS)
            writer = csv.writer(dst)
            writer.writerow(TILE_COLUMNS)
            for raw in _tile_rows(tiles_path):
                row = _parse_row(raw)
                if row is None or (retry_failed and not row.ok):
                    continue
                i = index.position(row.sample, row.tile)
                if i >= 0 and not written[i]:
                    written[i] = True
                    writer.writerow(_safe_cells(raw))
        if not det_path.exists():
            return
        with self._writing(DETECTIONS), open(det_path, "rb") as src, \
                atomic_writer(det_path) as dst:  # fmt: skip
            for line in src:
                parsed = _parse_detection(line) if line.endswith(b"\n") else None
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
        lines = b"".join(_detection_line(result.sample, result.tile, i, d)
                         for i, d in enumerate(result.detections))  # fmt: skip
        counts = result.counts()
        row = _csv_line(
            [neutralise(result.sample), neutralise(result.tile), result.status,
             neutralise(result.error), result.width, result.height,
             *(counts[c] for c in CELL_CLASSES), round(result.ms, 1), *_scale_cells(result.scale)]
        )  # fmt: skip
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


def iter_tiles(out_dir: Path) -> Iterator[TileResult]:
    """Every tile row of a scan folder (without detections), streamed."""
    return map(_row_to_result, _tile_rows(Path(out_dir) / TILES))


def read_tiles(out_dir: Path) -> list[TileResult]:
    """Every tile row of a scan folder (without detections)."""
    return list(iter_tiles(out_dir))


def _committed_lines(path: Path) -> Iterator[tuple[int, bytes, tuple[str, str, Detection]]]:
    """``(byte offset, line, parsed)`` of every complete line of ``detections.jsonl`` (see
    :func:`iter_detections`)."""
    offset = 0
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if not line.endswith(b"\n"):
                return
            parsed = _parse_detection(line)
            if parsed is None:
                raise OutputDirError(
                    f"{path}, line {number}: not a detection; re-run the scan command on this "
                    "folder to repair it (its tile is scanned again)"
                )
            yield offset, line, parsed
            offset += len(line)


def iter_detections(out_dir: Path) -> Iterator[tuple[str, str, Detection]]:
    """``(sample, tile, detection)`` for every line of ``detections.jsonl``, streamed.

    A last line without its newline is a write in progress (a scan running) and is not read;
    any other unreadable line raises :class:`~hemoscan.errors.OutputDirError` (re-running the
    scan command repairs the folder)."""
    for _, _, parsed in _committed_lines(Path(out_dir) / DETECTIONS):
        yield parsed


class TileBlock(NamedTuple):
    """One tile's lines of ``detections.jsonl`` (a tile's lines are always consecutive):
    where they lie (``offset`` and ``size`` in bytes, for :func:`read_tile_block`) and what
    they hold. ``detections[n]`` has ordinal ``n``, so its id is
    ``detection_id(sample, tile, n)``."""

    sample: str
    tile: str
    offset: int
    size: int
    detections: tuple[Detection, ...]


def iter_tile_blocks(out_dir: Path) -> Iterator[TileBlock]:
    """Every tile's block of ``detections.jsonl``, streamed, read like :func:`iter_detections`."""
    key: TileKey | None = None
    start = end = 0
    found: list[Detection] = []
    for offset, line, (sample, tile, det) in _committed_lines(Path(out_dir) / DETECTIONS):
        if (sample, tile) != key:
            if key is not None:
                yield TileBlock(*key, start, end - start, tuple(found))
            key, start, found = (sample, tile), offset, []
        found.append(det)
        end = offset + len(line)
    if key is not None:
        yield TileBlock(*key, start, end - start, tuple(found))


def read_tile_block(out_dir: Path, offset: int, size: int) -> list[Detection]:
    """The detections of the block at ``offset`` (see :class:`TileBlock`), in ordinal order."""
    with open(Path(out_dir) / DETECTIONS, "rb") as f:
        f.seek(offset)
        data = f.read(size)
    out = []
    for line in data.splitlines(keepends=True):
        parsed = _parse_detection(line)
        if parsed is None:
            raise OutputDirError(f"{Path(out_dir) / DETECTIONS}: changed while being read")
        out.append(parsed[2])
    return out


def read_results(out_dir: Path) -> list[TileResult]:
    """Every tile of a scan folder with its detections (for exports and reports)."""
    by_key: dict[TileKey, list[Detection]] = {}
    for sample, tile, det in iter_detections(out_dir):
        by_key.setdefault((sample, tile), []).append(det)
    results = []
    for t in read_tiles(out_dir):
        dets = tuple(by_key.get((t.sample, t.tile), ()))
        results.append(
            TileResult(t.sample, t.tile, t.status, t.width, t.height, dets, t.error, t.ms, t.scale)
        )
    return results


def read_run(out_dir: Path) -> dict[str, Any]:
    """``run.json`` of a scan folder: ``settings``, ``started_at``, ``working_dir``, and
    ``slides`` (records of whole-slide images, see :meth:`ScanStore.record_slides`) if any."""
    return json.loads((Path(out_dir) / RUN).read_text())
