"""Atomic writes keep the user's umask; file names made from sample and tile names never clash."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from hemoscan.io.files import atomic_write_bytes, atomic_write_text, atomic_writer, unique_stem


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_writes_respect_the_umask(tmp_path: Path, umask_022: None) -> None:
    atomic_write_text(tmp_path / "a.html", "x")
    atomic_write_bytes(tmp_path / "b.pdf", b"%PDF")
    assert _mode(tmp_path / "a.html") == 0o644 and _mode(tmp_path / "b.pdf") == 0o644
    os.umask(0o077)
    atomic_write_text(tmp_path / "private.json", "{}")
    assert _mode(tmp_path / "private.json") == 0o600


def test_atomic_write_stays_atomic_and_leaves_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_writer(path) as f:
            f.write("half of the new")
            assert path.read_text() == "old"  # readers see the old file while it is written
            raise RuntimeError("killed")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


@pytest.mark.parametrize(
    "names",
    [("case 1", "case_1", "case-1"), ("a b.jpg", "a_b.jpg"), ("a/b.jpg", "a__b.jpg", "a_/b.jpg", "a/_b.jpg"),
     ("/scans/a.jpg", "scans/a.jpg"), ("a\\b.jpg", "a/b.jpg"), (".hidden", "hidden"), ("x" * 300, "x" * 301)],
)  # fmt: skip
def test_unique_stems_never_clash(names: tuple[str, ...]) -> None:
    stems = [unique_stem(n) for n in names]
    assert len(set(stems)) == len(names), stems
    assert all(s and "/" not in s and "\\" not in s and " " not in s for s in stems)


def test_names_that_survive_stay_readable() -> None:
    assert unique_stem("sample_01") == "sample_01"
    assert unique_stem("example-tiles/sample_01/tile_001.jpg") == "example-tiles__sample_01__tile_001.jpg"
    assert unique_stem("case 1").startswith("case_1-") and len(unique_stem("case 1")) == len("case_1-") + 10
