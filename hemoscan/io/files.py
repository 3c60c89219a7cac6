"""Small file helpers shared by every writer: atomic writes and filesystem-safe names."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, TextIO

_SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 200


@contextmanager
def atomic_writer(path: Path) -> Iterator[TextIO]:
    """A text file that replaces ``path`` only when the block completes (via a temp file in the
    same folder, fsync and ``os.replace``): a reader, or a run killed mid-write, sees the old
    file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    with atomic_writer(path) as f:
        f.write(text)


def atomic_write_json(path: Path, obj: Any, indent: int | None = None) -> None:
    atomic_write_text(path, json.dumps(obj, ensure_ascii=False, indent=indent) + "\n")


def short_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()[:10]


def safe_stem(tile: str) -> str:
    """Filesystem-safe name for a tile path: anchor dropped, parts joined by ``__``."""
    pure = PureWindowsPath(tile) if "\\" in tile else PurePosixPath(tile)
    parts = [p for p in pure.parts if p not in (pure.anchor, "", ".")]
    stem = "__".join(_SAFE_CHARS.sub("_", p) for p in parts).lstrip(".") or "tile"
    if len(stem) > _MAX_NAME:
        stem = f"{stem[:_MAX_NAME]}-{short_hash(tile)}"
    return stem
