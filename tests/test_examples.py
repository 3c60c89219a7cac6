"""Tests of the procedural example-tile generator (hemoscan.examples)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from hemoscan.datamodel import CELL_CLASSES
from hemoscan.examples import ExampleCell, render_example_tile, write_example_tiles


def _render(seed: int, **kw):
    return render_example_tile(np.random.default_rng(seed), **kw)


def test_render_is_deterministic():
    img_a, cells_a = _render(3, hemophagocytes=1, macrophages=1)
    img_b, cells_b = _render(3, hemophagocytes=1, macrophages=1)
    assert np.array_equal(img_a, img_b)
    assert cells_a == cells_b
    img_c, _ = _render(4, hemophagocytes=1, macrophages=1)
    assert not np.array_equal(img_a, img_c)


def test_shape_dtype_and_size_is_width_height():
    img, cells = _render(0, size=(320, 200))
    assert img.shape == (200, 320, 3)
    assert img.dtype == np.uint8
    assert cells
    # pale background dominates; stained objects are darker
    assert 200 < float(np.median(img)) < 250
    assert img.min() < 150


@pytest.mark.parametrize("seed", range(6))
def test_ground_truth_boxes_inside_image(seed):
    w, h = 512, 384
    _, cells = _render(seed, size=(w, h), hemophagocytes=seed % 3, macrophages=1)
    assert cells
    for c in cells:
        assert c.label in CELL_CLASSES
        assert 0 <= c.x1 < c.x2 <= w
        assert 0 <= c.y1 < c.y2 <= h
        for t, x1, y1, x2, y2 in c.engulfed:
            assert t in ("rbc", "nucleated", "platelet")
            assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h
        if c.label != "hemophagocyte":
            assert c.engulfed == ()


def test_typical_counts_and_sizes():
    _, cells = _render(1, rbc_diameter_px=40.0)
    rbcs = [c for c in cells if c.label == "rbc"]
    assert 10 <= len(rbcs) <= 70
    # red cells not cut by the border are about one rbc diameter wide
    inner = [c for c in rbcs if c.x1 > 0 and c.y1 > 0 and c.x2 < 512 and c.y2 < 512]
    widths = [max(c.x2 - c.x1, c.y2 - c.y1) for c in inner]
    assert 30 <= float(np.median(widths)) <= 50


def test_explicit_rbc_count():
    _, cells = _render(2, n_rbc=5)
    assert sum(c.label == "rbc" for c in cells) <= 5
    _, cells = _render(2, n_rbc=0)
    assert sum(c.label == "rbc" for c in cells) == 0


@pytest.mark.parametrize("seed", range(8))
def test_hemophagocytes_hold_engulfed_cells_inside(seed):
    _, cells = _render(seed, hemophagocytes=1)
    hosts = [c for c in cells if c.label == "hemophagocyte"]
    assert len(hosts) == 1
    host = hosts[0]
    assert 1 <= len(host.engulfed) <= 4
    for _, x1, y1, x2, y2 in host.engulfed:
        assert host.x1 <= x1 < x2 <= host.x2
        assert host.y1 <= y1 < y2 <= host.y2
    # free cells stay outside the host body: their centres are not inside the host box core
    for c in cells:
        if c is host:
            continue
        cx, cy = (c.x1 + c.x2) / 2, (c.y1 + c.y2) / 2
        inset_x, inset_y = (host.x2 - host.x1) * 0.2, (host.y2 - host.y1) * 0.2
        inside_x = host.x1 + inset_x < cx < host.x2 - inset_x
        inside_y = host.y1 + inset_y < cy < host.y2 - inset_y
        assert not (inside_x and inside_y)


def test_macrophages_have_no_engulfed_cells():
    _, cells = _render(5, macrophages=2)
    macs = [c for c in cells if c.label == "macrophage"]
    assert 1 <= len(macs) <= 2
    assert all(c.engulfed == () for c in macs)
    assert not any(c.label == "hemophagocyte" for c in cells)


def test_example_cell_dict_round_trip():
    cell = ExampleCell("hemophagocyte", 1.0, 2.0, 30.5, 40.25, (("rbc", 5.0, 6.0, 10.0, 12.0),))
    d = cell.to_dict()
    assert d["engulfed_cells"] == [{"label": "rbc", "x1": 5.0, "y1": 6.0, "x2": 10.0, "y2": 12.0}]
    assert ExampleCell.from_dict(json.loads(json.dumps(d))) == cell
    plain = ExampleCell("rbc", 1.0, 2.0, 3.0, 4.0)
    assert "engulfed_cells" not in plain.to_dict()
    assert ExampleCell.from_dict(plain.to_dict()) == plain


def test_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        render_example_tile(rng, size=(8, 8))
    with pytest.raises(ValueError):
        render_example_tile(rng, hemophagocytes=-1)
    with pytest.raises(ValueError):
        write_example_tiles("/nonexistent-never-written", n_tiles=0)


def test_write_example_tiles(tmp_path):
    out = tmp_path / "tiles"
    paths = write_example_tiles(out, n_tiles=4, seed=7, size=256, samples=2)
    assert len(paths) == 4
    assert all(p.is_file() and p.suffix == ".jpg" for p in paths)
    folders = sorted(p.parent.name for p in paths)
    assert folders == ["sample_01", "sample_01", "sample_02", "sample_02"]
    assert sorted(d.name for d in out.iterdir() if d.is_dir()) == ["sample_01", "sample_02"]
    for p in paths:  # the last sample is drawn at a 100x oil magnification, on larger tiles
        with Image.open(p) as im:
            assert im.format == "JPEG"
            assert im.size == ((384, 384) if p.parent.name == "sample_02" else (256, 256))
            assert im.mode == "RGB"
    truth = json.loads((out / "ground_truth.json").read_text())
    diameters = {
        folder: np.median([c["x2"] - c["x1"] for k, cells in truth.items() if k.startswith(folder)
                           for c in cells if c["label"] == "rbc"])
        for folder in ("sample_01", "sample_02")
    }  # fmt: skip
    assert diameters["sample_01"] == pytest.approx(40, rel=0.15)
    assert diameters["sample_02"] == pytest.approx(90, rel=0.15)

    readme = (out / "README.txt").read_text(encoding="utf-8")
    assert "PROCEDURALLY GENERATED" in readme
    assert "NOT real" in readme
    assert "patient data" in readme
    assert "mean nothing clinically" in readme

    truth = json.loads((out / "ground_truth.json").read_text(encoding="utf-8"))
    assert sorted(truth) == sorted(p.relative_to(out).as_posix() for p in paths)
    for cells in truth.values():
        assert cells
        for d in cells:
            cell = ExampleCell.from_dict(d)
            assert cell.label in CELL_CLASSES
    # tile i gets i % 2 hemophagocytes
    labels = {rel: [d["label"] for d in cells] for rel, cells in truth.items()}
    rels = [p.relative_to(out).as_posix() for p in paths]
    assert labels[rels[1]].count("hemophagocyte") == 1
    assert labels[rels[0]].count("hemophagocyte") == 0


def test_write_example_tiles_is_deterministic(tmp_path):
    a = write_example_tiles(tmp_path / "a", n_tiles=3, seed=1, size=128, samples=2)
    b = write_example_tiles(tmp_path / "b", n_tiles=3, seed=1, size=128, samples=2)
    for pa, pb in zip(a, b, strict=True):
        assert pa.relative_to(tmp_path / "a") == pb.relative_to(tmp_path / "b")
        assert pa.read_bytes() == pb.read_bytes()
    for name in ("ground_truth.json", "README.txt"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    c = write_example_tiles(tmp_path / "c", n_tiles=3, seed=2, size=128, samples=2)
    assert a[0].read_bytes() != c[0].read_bytes() or a[1].read_bytes() != c[1].read_bytes()


def test_one_example_tile_is_blurred_and_flagged_out_of_focus(tmp_path):
    from hemoscan.examples import BLURRED_TILE
    from hemoscan.qc import tile_qc

    paths = write_example_tiles(tmp_path, n_tiles=BLURRED_TILE + 2)
    flags = [tile_qc(np.asarray(Image.open(p).convert("RGB"))).flags for p in paths]
    assert [i for i, f in enumerate(flags) if "out_of_focus" in f] == [BLURRED_TILE]
    assert "tile_005.jpg` is deliberately out of focus" in (tmp_path / "README.txt").read_text()
