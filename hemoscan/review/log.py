"""The review audit: ``review.jsonl`` in a scan folder, one verdict per line, append-only.

Each line is a :class:`Verdict` as JSON: the detection id (``detections.jsonl``'s ``id``, or
``a<16 hex>`` for a cell a reviewer added), who, when (UTC), the verdict, the final label and
engulfed counts, and what the model said (label and score). A line about an added cell holds
its box. The **latest line** for an id wins (file order, not clock time: reviewers' clocks may
differ); ``clear`` withdraws an id's verdicts (pending again; an added cell is removed). Lines
are never changed or removed, so the file is the whole history, and ``detections.jsonl`` is
never touched.

**Several writers.** Every append takes an exclusive ``flock`` on the file (waiting for
another reviewer's append to finish), writes its lines with one ``write`` on a descriptor
opened ``O_APPEND`` and fsyncs before releasing the lock, so two reviewers (two browsers, a
browser and ``--apply``) lose no verdict and never interleave lines. A torn last line (a writer
killed mid-write) is closed with a newline before the next append, so it stays one unreadable
line, skipped and counted by readers, and never swallows the next verdict.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hemoscan.datamodel import REVIEWED_CLASSES
from hemoscan.errors import HemoscanError
from hemoscan.io.scan_store import guard_writes

REVIEW_LOG = "review.jsonl"
#: ``accept``: the model is right; ``reject``: the cell is neither a hemophagocyte nor a
#: macrophage (a hemophagocyte that is a plain macrophage is relabelled, not rejected);
#: ``relabel``: it is ``label``; ``add``: a cell the model missed, with its box; ``clear``:
#: the id's earlier verdicts are withdrawn.
VERDICTS = ("accept", "reject", "relabel", "add", "clear")
#: What a reviewed cell finally is.
FINAL_LABELS = (*REVIEWED_CLASSES, "other_cell", "artefact")
#: Engulfed counts a reviewer states for a hemophagocyte.
ENGULFED_KEYS = ("rbc", "nucleated", "platelet")


class ReviewError(HemoscanError):
    """A verdict, a review file or a review request is unusable; the message says which and why."""


def utc_time() -> str:
    """Now, UTC, to the millisecond: ``2025-03-01T09:30:12.345Z``."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_added_id() -> str:
    """A fresh id for a cell a reviewer adds: ``a`` and 16 random hex digits."""
    return "a" + secrets.token_hex(8)


def check_engulfed(value: Any, where: str = "engulfed") -> dict[str, int]:
    """``{"rbc": n, "nucleated": n, "platelet": n}`` from a mapping of non-negative integers."""
    if not isinstance(value, Mapping) or set(value) != set(ENGULFED_KEYS):
        raise ReviewError(f"{where}: need the counts {', '.join(ENGULFED_KEYS)}, got {value!r}")
    out = {}
    for key in ENGULFED_KEYS:
        n = value[key]
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= 999:
            raise ReviewError(f"{where}: {key} must be a whole number from 0 to 999, got {n!r}")
        out[key] = n
    return out


@dataclass(frozen=True)
class Verdict:
    """One line of ``review.jsonl``.

    ``label``: the final label (one of :data:`FINAL_LABELS`): the model's for ``accept``, the
    given one for ``relabel`` and ``add``, ``None`` for ``reject`` and ``clear``.
    ``engulfed``: the final engulfed counts when the final label is ``hemophagocyte``
    (:data:`ENGULFED_KEYS`), else ``None``. ``model_label`` / ``model_score``: the suggestion
    as the model made it (``None`` for an added cell). ``box``: an added cell's
    ``x1, y1, x2, y2`` in the frame of its tile's detections (tile pixels; level-0 pixels for
    slides). ``source``: where it was given (``browser``, ``csv:<file>``, ``geojson:<file>``).
    Construction checks every rule above and raises :class:`ReviewError`.
    """

    id: str
    verdict: str
    reviewer: str
    sample: str
    tile: str
    label: str | None = None
    engulfed: dict[str, int] | None = None
    model_label: str | None = None
    model_score: float | None = None
    box: tuple[float, float, float, float] | None = None
    time: str = field(default_factory=utc_time)
    source: str = "browser"

    def __post_init__(self) -> None:
        where = f"verdict on {self.id!r}"
        if self.verdict not in VERDICTS:
            raise ReviewError(f"{where}: unknown verdict {self.verdict!r}; use one of {VERDICTS}")
        if not self.reviewer or not self.reviewer.strip():
            raise ReviewError(f"{where}: a verdict needs a reviewer name")
        added = self.id.startswith("a")
        if added != (self.verdict == "add") and self.verdict != "clear":
            raise ReviewError(f"{where}: '{self.verdict}' is for "
                              f"{'suggestions' if added else 'added cells'} only")  # fmt: skip
        if self.verdict == "accept" and self.label != self.model_label:
            raise ReviewError(f"{where}: accept keeps the model's label {self.model_label!r}")
        if self.verdict in ("reject", "clear") and self.label is not None:
            raise ReviewError(f"{where}: '{self.verdict}' takes no label")
        if self.verdict == "relabel":
            if self.label not in FINAL_LABELS:
                raise ReviewError(f"{where}: relabel needs a label among {FINAL_LABELS}, "
                                  f"got {self.label!r}")  # fmt: skip
            if self.label == self.model_label:
                raise ReviewError(f"{where}: relabelled as what the model said; use accept")
        if self.verdict == "add":
            if self.label not in REVIEWED_CLASSES:
                raise ReviewError(f"{where}: an added cell is one of {REVIEWED_CLASSES}")
            box = self.box
            if box is None or len(box) != 4 or not (box[0] < box[2] and box[1] < box[3]):
                raise ReviewError(f"{where}: an added cell needs a box x1 < x2, y1 < y2, got {box}")
            object.__setattr__(self, "box", tuple(float(v) for v in box))
        elif self.box is not None and self.verdict != "clear":
            raise ReviewError(f"{where}: only an added cell has a box")
        if self.label == "hemophagocyte":
            counts = self.engulfed if self.engulfed is not None else dict.fromkeys(ENGULFED_KEYS, 0)
            object.__setattr__(self, "engulfed", check_engulfed(counts, where))
        elif self.engulfed is not None:
            raise ReviewError(f"{where}: only a hemophagocyte holds engulfed cells")

    @property
    def added(self) -> bool:
        return self.id.startswith("a")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "id": self.id, "time": self.time, "reviewer": self.reviewer, "verdict": self.verdict,
            "label": self.label, "engulfed": self.engulfed, "model_label": self.model_label,
            "model_score": self.model_score, "sample": self.sample, "tile": self.tile,
            "source": self.source,
        }  # fmt: skip
        if self.box is not None:
            d["box"] = [round(v, 2) for v in self.box]
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Verdict:
        box = d.get("box")
        return cls(id=str(d["id"]), verdict=d["verdict"], reviewer=d["reviewer"],
                   sample=d["sample"], tile=d["tile"], label=d.get("label"),
                   engulfed=d.get("engulfed"), model_label=d.get("model_label"),
                   model_score=d.get("model_score"), box=tuple(box) if box else None,
                   time=d["time"], source=d.get("source", ""))  # fmt: skip


class ReviewLog:
    """``review.jsonl`` of the scan folder ``scan_dir`` (see the module docstring).

    ``unreadable`` counts the lines :meth:`read` could not read (since :meth:`latest` last began).
    """

    def __init__(self, scan_dir: str | Path) -> None:
        self.path = Path(scan_dir) / REVIEW_LOG
        self.unreadable = 0
        self.end = 0

    def append(self, verdicts: Iterable[Verdict]) -> None:
        """Append ``verdicts`` as one locked, fsynced write (see the module docstring)."""
        data = b"".join(
            (json.dumps(v.to_dict(), ensure_ascii=False) + "\n").encode("utf-8", "backslashreplace")
            for v in verdicts
        )
        if not data:
            return
        # lazy: fcntl is POSIX-only, and `hemoscan report` imports this module on any OS
        import fcntl

        with guard_writes(self.path):
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                size = os.fstat(fd).st_size
                if size and os.pread(fd, 1, size - 1) != b"\n":
                    data = b"\n" + data  # close a torn last line: it stays one unreadable line
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
            finally:
                os.close(fd)  # drops the lock

    def read(self, start: int = 0) -> Iterator[Verdict]:
        """Every readable verdict from byte ``start`` on, in file order; a last line still being
        written is not read. Afterwards ``end`` is the offset to read on from."""
        self.end = start
        try:
            f = open(self.path, "rb")
        except FileNotFoundError:
            return
        with f:
            f.seek(start)
            for line in f:
                if not line.endswith(b"\n"):
                    return
                self.end += len(line)
                if not line.strip():
                    continue
                try:
                    yield Verdict.from_dict(json.loads(line))
                except (ValueError, KeyError, TypeError, HemoscanError):
                    self.unreadable += 1

    def latest(self) -> dict[str, Verdict]:
        """The verdict in force per id (``clear`` removes the id), in order of first verdict."""
        self.unreadable = 0
        state: dict[str, Verdict] = {}
        apply_verdicts(state, self.read())
        return state


def apply_verdicts(state: dict[str, Verdict], verdicts: Iterable[Verdict]) -> None:
    """Update ``state`` (verdict in force per id) with later ``verdicts``."""
    for v in verdicts:
        if v.verdict == "clear":
            state.pop(v.id, None)
        else:
            state[v.id] = v
