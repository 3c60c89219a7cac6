from __future__ import annotations

import os
from pathlib import Path

import pytest

from hemoscan.errors import SourceError
from hemoscan.io.sources import TileSource, TileSources, expand_sources
from tests.conftest import unprivileged


def touch(root: Path, *names: str) -> None:
    for name in names:
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    return tmp_path


def paths(tiles: list[TileSource]) -> list[str]:
    return [t.path for t in tiles]


def test_folder_recursive_sorted_hidden_skipped(in_tmp: Path) -> None:
    touch(
        in_tmp / "scans",
        "b/tile10.png",
        "b/tile2.PNG",
        "a.jpg",
        "c/d/e.TIFF",
        "c/x.tif",
        "z.jpeg",
        "notes.txt",
        "img.bmp",
        ".hidden.png",
        ".cache/f.png",
        "b/.thumb.jpg",
    )
    tiles = expand_sources(["scans"])
    assert paths(tiles) == [
        os.path.join("scans", "a.jpg"),
        os.path.join("scans", "b", "tile2.PNG"),
        os.path.join("scans", "b", "tile10.png"),
        os.path.join("scans", "c", "d", "e.TIFF"),
        os.path.join("scans", "c", "x.tif"),
        os.path.join("scans", "z.jpeg"),
    ]
    assert [t.sample for t in tiles] == ["scans", "b", "b", "d", "c", "scans"]


def test_folder_path_kept_as_given(in_tmp: Path) -> None:
    touch(in_tmp, "scans/p1/a.png")
    assert paths(expand_sources(["scans/"])) == [os.path.join("scans/", "p1", "a.png")]
    absolute = str(in_tmp / "scans")
    assert paths(expand_sources([absolute])) == [os.path.join(absolute, "p1", "a.png")]


def test_empty_folder(in_tmp: Path) -> None:
    touch(in_tmp, "empty/readme.txt", "empty/.x.png")
    with pytest.raises(SourceError) as info:
        expand_sources(["empty"])
    assert str(info.value) == (
        "empty: folder holds no .png/.jpg/.jpeg/.tif/.tiff/.svs/.ndpi/.scn/.bif images"
    )


def test_glob(in_tmp: Path) -> None:
    touch(in_tmp, "s/p1/a.png", "s/p1/b.txt", "s/p2/c.jpg", "s/p2/.h.png", "s/top.tif")
    assert paths(expand_sources(["s/*/*"])) == [
        os.path.join("s", "p1", "a.png"),
        os.path.join("s", "p2", "c.jpg"),
    ]
    assert paths(expand_sources(["s/**/*.tif"])) == [os.path.join("s", "top.tif")]


def test_glob_no_match(in_tmp: Path) -> None:
    touch(in_tmp, "s/a.txt")
    with pytest.raises(SourceError, match=r"^s/\*\.png: pattern matches no "):
        expand_sources(["s/*.png"])
    with pytest.raises(SourceError, match=r"^s/\*: pattern matches 1 files but none is"):
        expand_sources(["s/*"])


def test_explicit_files_kept_even_if_unsupported(in_tmp: Path) -> None:
    touch(in_tmp, "x.bmp", "d/a.png")
    tiles = expand_sources(["x.bmp", "d/a.png"])
    assert paths(tiles) == ["x.bmp", "d/a.png"]
    assert tiles[0].sample == in_tmp.name
    assert tiles[1].sample == "d"


def test_missing(in_tmp: Path) -> None:
    with pytest.raises(SourceError) as info:
        expand_sources(["nope/a.png"])
    assert str(info.value) == "nope/a.png: no such file or folder"


def test_empty_sources() -> None:
    with pytest.raises(SourceError, match="no sources given"):
        expand_sources([])


def test_single_string_rejected() -> None:
    with pytest.raises(TypeError):
        expand_sources("scans")  # type: ignore[arg-type]


def test_list_file(in_tmp: Path) -> None:
    touch(in_tmp, "lists/imgs/a.png", "lists/folder/b.jpg", "lists/folder/c.tif", "other/z.png")
    touch(in_tmp, "lists/g/1.png", "lists/g/2.png", "lists/inner.txt")
    abs_z = str(in_tmp / "other" / "z.png")
    (in_tmp / "lists" / "l.txt").write_text(
        "# a comment\n"
        "\n"
        "imgs/a.png\n"
        "   # indented comment\n"
        f"{abs_z}\n"
        "folder\r\n"
        "g/*.png  \n"
        "inner.txt\n"
    )
    tiles = expand_sources(["lists/l.txt"])
    assert paths(tiles) == [
        os.path.join("lists", "imgs/a.png"),
        abs_z,
        os.path.join("lists", "folder", "b.jpg"),
        os.path.join("lists", "folder", "c.tif"),
        os.path.join("lists", "g/1.png"),
        os.path.join("lists", "g/2.png"),
        os.path.join("lists", "inner.txt"),
    ]
    assert [t.sample for t in tiles] == ["imgs", "other", "folder", "folder", "g", "g", "lists"]


def test_list_file_missing_entry(in_tmp: Path) -> None:
    (in_tmp / "l.txt").write_text("# header\nmissing.png\n")
    with pytest.raises(SourceError) as info:
        expand_sources(["l.txt"])
    assert str(info.value) == "l.txt, line 2: missing.png: no such file or folder"


def test_list_file_without_entries(in_tmp: Path) -> None:
    (in_tmp / "l.txt").write_text("# nothing\n\n")
    with pytest.raises(SourceError, match=r"^l\.txt: list file names no images$"):
        expand_sources(["l.txt"])


def test_deduplicated_first_wins(in_tmp: Path) -> None:
    touch(in_tmp, "s/a.png", "s/b.png")
    (in_tmp / "l.txt").write_text("s/b.png\n")
    tiles = expand_sources(["s/b.png", "s", "./s/a.png", "l.txt", str(in_tmp / "s" / "b.png")])
    assert paths(tiles) == ["s/b.png", os.path.join("s", "a.png")]


def test_deduplicated_through_symlink(in_tmp: Path) -> None:
    touch(in_tmp, "s/a.png")
    os.symlink(in_tmp / "s", in_tmp / "link")
    assert paths(expand_sources(["s", "link"])) == [os.path.join("s", "a.png")]


def test_symlink_loop_terminates(in_tmp: Path) -> None:
    touch(in_tmp, "s/a.png")
    os.symlink(in_tmp / "s", in_tmp / "s" / "loop")
    assert paths(expand_sources(["s"])) == [os.path.join("s", "a.png")]


def test_sample_id_overrides(in_tmp: Path) -> None:
    touch(in_tmp, "p1/a.png", "p2/b.png")
    tiles = expand_sources(["p1", "p2/b.png"], sample_id="case-7")
    assert {t.sample for t in tiles} == {"case-7"}
    with pytest.raises(SourceError, match="sample id"):
        expand_sources(["p1"], sample_id=" ")


def test_sample_from_parent_folder(in_tmp: Path) -> None:
    touch(in_tmp, "scans/patient_A/tile1.png", "scans/patient_B/x/../tile2.png")
    tiles = expand_sources(["scans/patient_A/tile1.png", "scans/patient_B/x/../tile2.png"])
    assert [t.sample for t in tiles] == ["patient_A", "patient_B"]
    assert tiles[0] == TileSource(path="scans/patient_A/tile1.png", sample="patient_A")


def test_pathlike_source(in_tmp: Path) -> None:
    touch(in_tmp, "d/a.png")
    assert paths(expand_sources([Path("d")])) == [os.path.join("d", "a.png")]


def test_tile_sources_stream_the_same_tiles_on_every_pass(in_tmp: Path) -> None:
    # files and folders of one folder interleave in natural order: 2.png, 10/, b.png
    touch(in_tmp / "s", "b.png", "10/x.png", "2.png", "10/1.png")
    (in_tmp / "l.txt").write_text("s/b.png\n# comment\ns\n")
    sources = TileSources(["l.txt", "s/2.png"], sample_id="P")
    first, second = list(sources), list(sources)
    expected = [os.path.join("s", n) for n in ("b.png", "2.png", "10/1.png", "10/x.png")]
    assert paths(first) == [os.path.normpath(p) for p in expected]
    assert first == second == expand_sources(["l.txt", "s/2.png"], sample_id="P")
    with pytest.raises(SourceError, match="no sources given"):
        TileSources([])


def test_what_cannot_be_walked_becomes_a_failed_tile(tmp_path: Path) -> None:
    """An unreadable folder, a broken link and a link loop are never silently left out."""
    root = tmp_path / "scans"
    touch(root, "P1/a.png", "P1/locked/b.png", "P2/c.png")
    os.symlink("gone.png", root / "P1" / "broken.png")
    os.symlink("loop_b", root / "P1" / "loop_a")
    os.symlink("loop_a", root / "P1" / "loop_b")
    (root / "P1" / "locked").chmod(0)
    with unprivileged():
        tiles = expand_sources([str(root)])
    failed = {os.path.basename(t.path): (t.sample, t.error) for t in tiles if t.error}
    assert [os.path.basename(t.path) for t in tiles if not t.error] == ["a.png", "c.png"]
    assert failed["broken.png"] == ("P1", f"{root / 'P1' / 'broken.png'}: broken symbolic link "
                                          "(its target does not exist)")  # fmt: skip
    assert failed["loop_a"][1].endswith("loop_a: symbolic link loop")
    assert failed["loop_b"][1].endswith("loop_b: symbolic link loop")
    assert failed["locked"][0] == "locked"  # the sample its tiles would have belonged to
    assert "cannot read it (Permission denied)" in failed["locked"][1]
    assert len(tiles) == 6


def test_check_raises_what_an_iteration_would(in_tmp: Path) -> None:
    touch(in_tmp, "a/t1.png")
    (in_tmp / "list.txt").write_text("a/t1.png\nmissing.png\n")
    TileSources(["a"]).check()
    with pytest.raises(SourceError, match=r"list.txt, line 2: missing.png: no such file or folder"):
        TileSources(["a", "list.txt"]).check()
