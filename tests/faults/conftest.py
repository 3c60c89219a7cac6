"""Helpers of the fault-injection suite: failing writes and checks of a scan folder."""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from hemoscan.datamodel import CELL_CLASSES
from hemoscan.io.spreadsheet import restore


def committed_rows(out: Path) -> list[dict[str, str]]:
    """The rows of ``tiles.csv`` a reader sees (complete lines), text cells restored."""
    text = (out / "tiles.csv").read_text(encoding="utf-8", errors="surrogateescape")
    if not text.endswith("\n"):
        text = text[: text.rfind("\n") + 1]
    rows = list(csv.DictReader(text.splitlines(keepends=True)))
    return [{k: restore(v) if k in ("sample", "tile", "error") else v for k, v in r.items()}
            for r in rows if None not in r and None not in r.values()]  # fmt: skip


def detection_lines(out: Path) -> list[dict]:
    """Every complete, parseable line of ``detections.jsonl``."""
    path = out / "detections.jsonl"
    if not path.exists():
        return []
    lines = []
    for line in path.read_bytes().split(b"\n")[:-1]:
        try:
            lines.append(json.loads(line))
        except ValueError:
            pass
    return lines


def assert_committed_tiles_are_whole(out: Path) -> int:
    """Every ok row of ``tiles.csv`` has exactly its counted detection lines on disk; returns
    the number of committed tiles."""
    found = Counter((d["sample"], d["tile"], d["label"]) for d in detection_lines(out))
    rows = committed_rows(out)
    for row in rows:
        if row["status"] == "ok":
            for c in CELL_CLASSES:
                assert found[row["sample"], row["tile"], c] == int(row[c]), (row, c)
    return len(rows)


def outputs(out: Path) -> tuple[list, list]:
    """What must equal between two scans of the same tiles: detections (any order) and rows
    without the timing column."""
    det = sorted(json.dumps(d, sort_keys=True) for d in detection_lines(out))
    rows = sorted(tuple(v for k, v in r.items() if k != "ms") for r in committed_rows(out))
    return det, rows


class FailingWrites:
    """Make the write steps of a scan fail: ``on(function, match, after, ...)`` patches
    ``os.write``, ``os.fsync``, ``os.replace`` or ``Path.write_bytes`` so that, among calls
    whose target file satisfies ``match``, the first ``after`` succeed and later ones raise
    ``OSError(errno_)`` (with ``partial``, the first failing call writes half its bytes)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.monkeypatch = monkeypatch
        self.failed = 0

    def on(self, function: str, match: Callable[[str], bool], after: int, errno_: int,
           partial: bool = False) -> None:  # fmt: skip
        calls = {"n": 0, "partial_done": not partial}
        real = {"write": os.write, "fsync": os.fsync, "replace": os.replace,
                "write_bytes": Path.write_bytes}[function]  # fmt: skip

        def target(args: tuple) -> str:
            if function in ("write", "fsync"):
                return os.readlink(f"/proc/self/fd/{args[0]}")
            return str(args[1] if function == "replace" else args[0])

        def wrapper(*args, **kwargs):
            if match(target(args)):
                calls["n"] += 1
                if calls["n"] > after:
                    if not calls["partial_done"]:
                        calls["partial_done"] = True
                        return real(args[0], bytes(args[1])[: len(args[1]) // 2])
                    self.failed += 1
                    raise OSError(errno_, os.strerror(errno_))
            return real(*args, **kwargs)

        if function == "write_bytes":
            self.monkeypatch.setattr(Path, "write_bytes", wrapper)
        else:
            self.monkeypatch.setattr(os, function, wrapper)


@pytest.fixture
def failing_writes(monkeypatch: pytest.MonkeyPatch) -> FailingWrites:
    return FailingWrites(monkeypatch)
