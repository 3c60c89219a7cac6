"""Small file helpers shared by every writer: atomic writes and filesystem-safe names."""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO, Any, TextIO

_SAFE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
_MAX_NAME = 200


def _create_temp(folder: Path, name: str) -> tuple[int, Path]:
    """A new empty file beside ``name`` in ``folder``, created with mode 0666 so the process
    umask applies (0644 under the usual 022), as for any file the user creates; ``mkstemp``
    would make it 0600 and colleagues could not read the result."""
    while True:
        tmp = folder / f".{name}.{secrets.token_hex(6)}.tmp"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


@contextmanager
def _atomic(path: Path, mode: str) -> Iterator[IO[Any]]:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path.parent, path.name)
    try:
        text = {"encoding": "utf-8", "newline": ""} if "b" not in mode else {}
        with os.fdopen(fd, mode, **text) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextmanager
def atomic_writer(path: Path) -> Iterator[TextIO]:
    """A text file that replaces ``path`` only when the block completes (via a temp file in the
    same folder, fsync and ``os.replace``): a reader, or a run killed mid-write, sees the old
    file or the new one, never half of one. The file gets the mode the umask gives a new file."""
    with _atomic(path, "w") as f:
        yield f  # type: ignore[misc]


def atomic_write_bytes(path: Path, data: bytes) -> None:
    with _atomic(path, "wb") as f:
        f.write(data)


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


def _survives(name: str, stem: str) -> bool:
    """Whether ``name`` can be read back from ``stem``: a relative ``/``-separated path whose
    parts are made of safe characters and neither hold ``__`` nor start or end with ``_``
    (so every ``__`` of the stem is a separator)."""
    parts = name.split("/")
    return stem == "__".join(parts) and all(
        p and p not in (".", "..") and not p.startswith(("_", ".")) and not p.endswith("_")
        and "__" not in p for p in parts
    )  # fmt: skip


def unique_stem(name: str) -> str:
    """:func:`safe_stem` of ``name``, with ``-<short hash of name>`` appended whenever ``name``
    did not survive it unchanged (a character replaced, an anchor or separator that cannot be
    read back), so two different names never share a stem: ``case 1`` and ``case_1`` give
    ``case_1-<hash>`` and ``case_1``; ``scans/a.jpg`` stays ``scans__a.jpg``."""
    stem = safe_stem(name)
    return stem if _survives(name, stem) else f"{stem}-{short_hash(name)}"
