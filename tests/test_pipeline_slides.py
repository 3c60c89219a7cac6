"""End-to-end scans of whole-slide images (pyramidal TIFF and SVS) with the tiny blob model."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hemoscan.cli.app import app
from hemoscan.datamodel import CELL_CLASSES
from hemoscan.errors import PixelSizeError
from hemoscan.inference.predictor import Predictor
from hemoscan.io.regions import parse_region_name
from hemoscan.io.scan_files import TILE_COLUMNS
from hemoscan.io.slides import Slide
from hemoscan.models import ModelConfig, create_model, save_model_folder
from hemoscan.pipeline import ScanOptions, scan
from tests.wsi import smear, write_pyramidal_tiff, write_svs

# The tiny model finds discs 24 px across; its config says it wants 0.5 µm pixels. The slide is
# 2048 x 1536 at 0.25 µm (levels at 0.5 and 1.0 µm), so level 1 is read, and the discs are drawn
# 48 px across at level 0. Regions: 320 model pixels with 160 of overlap (the largest cell is
# 6 x 24 px), so in level-0 pixels cores meet at x = 480, 800, 1120, ... and y = 480, 800, 1120.
SLIDE_CONFIG = ModelConfig(
    name="tiny-slide", version="0", architecture="tiny_blob", classes=CELL_CLASSES,
    mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), default_threshold=0.5, tile_size=256,
    overlap=64, rbc_diameter_px=24, mpp=0.5,
)  # fmt: skip
SEAM = (480, 300)  # on the seam between the first two columns of regions
CORNER = (800, 800)  # where four regions meet
DISCS = [(200, 200), SEAM, CORNER, (650, 1000), (300, 1300), (1000, 1400)]
BLANK_X = 1150  # nothing is drawn right of this: the three right columns of regions are glass
RADIUS = 24


@pytest.fixture(scope="module")
def slide_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("models") / "tiny-slide"
    save_model_folder(create_model("tiny_blob", len(CELL_CLASSES)), SLIDE_CONFIG, folder)
    return folder


@pytest.fixture(scope="module")
def slides(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("slides")
    level0 = smear(2048, 1536, DISCS, RADIUS)
    assert max(x for x, _ in DISCS) + RADIUS < BLANK_X
    return {
        "tif": write_pyramidal_tiff(root / "case1" / "smear.tif", level0, mpp=0.25),
        "svs": write_svs(root / "case2" / "smear.svs", level0, mpp=0.25),
        "bare": write_pyramidal_tiff(root / "case3" / "bare.tif", level0, mpp=None),
    }


def _options(model: Path, **kw) -> ScanOptions:
    return ScanOptions(**{"scale": 1.0, "model": str(model), **kw})


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "tiles.csv", newline="") as f:
        return list(csv.DictReader(f))


def _detections(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]


def _centre(d: dict) -> tuple[float, float]:
    return (d["x1"] + d["x2"]) / 2, (d["y1"] + d["y2"]) / 2


def _assert_each_disc_found_once(dets: list[dict], tol: float = 6.0) -> None:
    assert len(dets) == len(DISCS)
    for x, y in DISCS:
        near = [d for d in dets if abs(_centre(d)[0] - x) <= tol and abs(_centre(d)[1] - y) <= tol]
        assert len(near) == 1, (x, y, [_centre(d) for d in dets])


@pytest.fixture
def predicted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Shapes of every image the predictor is given."""
    shapes: list[tuple[int, int]] = []
    original = Predictor.predict_scaled

    def counting(self, images, fixed=None):  # type: ignore[no-untyped-def]
        shapes.extend(img.shape[:2] for img in images)
        return original(self, images, fixed)

    monkeypatch.setattr(Predictor, "predict_scaled", counting)
    return shapes


def test_slide_scan_counts_seam_cells_once_and_skips_glass(
    slide_model: Path, slides: dict[str, Path], tmp_path: Path, predicted: list
) -> None:
    out = tmp_path / "out"
    summary = scan([str(slides["tif"])], out, _options(slide_model, batch_size=3))
    dets = _detections(out)
    _assert_each_disc_found_once(dets)
    for d in dets:  # level-0 pixels: boxes 24 model pixels = 48 slide pixels across
        assert d["sample"] == "smear" and d["label"] == "nucleated"
        assert d["x2"] - d["x1"] == pytest.approx(48, abs=0.5)
        slide, x, y, w, h = parse_region_name(d["tile"])
        assert (
            slide == str(slides["tif"])
            and x <= _centre(d)[0] < x + w
            and y <= _centre(d)[1] < y + h
        )
    rows = _rows(out)
    assert tuple(rows[0]) == TILE_COLUMNS and {r["status"] for r in rows} == {"ok"}
    assert len(predicted) == len(rows) == summary.tiles_total  # one prediction per region
    assert all(shape[0] <= 320 and shape[1] <= 320 for shape in predicted)
    cores = [parse_region_name(r["tile"]) for r in rows]
    assert all(c is not None and (int(r["width"]), int(r["height"])) == (c[3], c[4])
               for c, r in zip(cores, rows))  # fmt: skip
    assert not any(x >= BLANK_X for _, x, _, _, _ in cores)  # blank glass never predicted
    for x, y in DISCS:  # but every region holding a cell is
        assert any(c[1] <= x < c[1] + c[3] and c[2] <= y < c[2] + c[4] for c in cores)
    assert sum(int(r["nucleated"]) for r in rows) == len(DISCS)

    (record,) = json.loads((out / "run.json").read_text())["slides"]
    assert record["slide"] == str(slides["tif"]) and (record["width"], record["height"]) == (
        2048,
        1536,
    )
    assert (record["mpp"], record["mpp_source"], record["target_mpp"]) == (0.25, "metadata", 0.5)
    assert (record["level"], record["level_downsample"], record["level_mpp"]) == (1, 2.0, 0.5)
    assert record["regions_total"] == 24 and record["regions_background"] >= 3 * 4
    assert record["regions_scanned"] == len(rows) == 24 - record["regions_background"]
    assert summary.regions_background == record["regions_background"]
    doc = json.loads((out / "summary.json").read_text())
    assert doc["slides"] == [record]
    (sample,) = doc["samples"]
    assert sample["counts"]["nucleated"] == len(DISCS) and sample["tiles_scanned"] == len(rows)


def test_svs_scans_through_the_same_reader(
    slide_model: Path, slides: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    scan([str(slides["svs"])], out, _options(slide_model, workers=0))
    _assert_each_disc_found_once(_detections(out))
    (record,) = json.loads((out / "summary.json").read_text())["slides"]
    assert record["vendor"] == "aperio" and record["level"] == 1 and record["sample"] == "smear"


def test_the_slide_is_read_region_by_region(
    slide_model: Path, slides: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[tuple[int, int, int]] = []
    original = Slide.read_region

    def recording(self, x, y, w, h, level=0):  # type: ignore[no-untyped-def]
        reads.append((level, w, h))
        return original(self, x, y, w, h, level)

    monkeypatch.setattr(Slide, "read_region", recording)
    scan([str(slides["tif"])], tmp_path / "out", _options(slide_model))
    assert {level for level, _, _ in reads} == {1, 2}  # regions at 1, the mask at 2
    assert max(w * h for level, w, h in reads if level == 1) <= 321 * 321  # never the level


def test_missing_pixel_size_needs_mpp(
    slide_model: Path, slides: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with pytest.raises(PixelSizeError, match=r"bare\.tif: .*no pixel size.*--mpp"):
        scan([str(slides["bare"])], out, _options(slide_model))
    assert not (out / "tiles.csv").exists()
    result = CliRunner().invoke(app, ["scan", str(slides["bare"]), "--out", str(out), "--model",
                                      str(slide_model), "-q"])  # fmt: skip
    assert result.exit_code == 2 and "bare.tif" in result.output and "--mpp" in result.output
    result = CliRunner().invoke(app, ["scan", str(slides["bare"]), "--out", str(out), "--model",
                                      str(slide_model), "-q", "--mpp", "0.25"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "slide region(s) of blank glass skipped" in result.output
    _assert_each_disc_found_once(_detections(out))
    (record,) = json.loads((out / "run.json").read_text())["slides"]
    assert (record["mpp"], record["mpp_source"], record["level"]) == (0.25, "given", 1)
    result = CliRunner().invoke(app, ["scan", str(slides["bare"]), "--out", str(out), "--model",
                                      str(slide_model), "-q", "--mpp", "0.3"])  # fmt: skip
    assert result.exit_code == 2 and "mpp: 0.25 -> 0.3" in result.output  # resume must match


def test_slide_scan_resumes_without_duplicates(
    slide_model: Path, slides: dict[str, Path], tmp_path: Path
) -> None:
    clean, killed = tmp_path / "clean", tmp_path / "killed"
    first = scan([str(slides["tif"])], clean, _options(slide_model))
    again = scan([str(slides["tif"])], clean, _options(slide_model))
    assert (again.tiles_scanned_now, again.tiles_skipped) == (0, first.tiles_total)
    scan([str(slides["tif"])], killed, _options(slide_model))
    lines = (killed / "tiles.csv").read_text().splitlines(keepends=True)
    (killed / "tiles.csv").write_text("".join(lines[:3]) + lines[3][:10])  # killed mid-row
    resumed = scan([str(slides["tif"])], killed, _options(slide_model))
    assert resumed.tiles_scanned_now == first.tiles_total - 2
    key = lambda d: (d["tile"], d["x1"], d["y1"], d["x2"], d["y2"])
    assert sorted(map(key, _detections(killed))) == sorted(map(key, _detections(clean)))
    assert sorted(r["tile"] for r in _rows(killed)) == sorted(r["tile"] for r in _rows(clean))
    assert len(json.loads((killed / "run.json").read_text())["slides"]) == 1


def test_slides_and_tiles_in_one_scan_with_exports(
    slide_model: Path, slides: dict[str, Path], tmp_path: Path
) -> None:
    tile = tmp_path / "tiles" / "p1" / "field.png"
    from tests.conftest import write_image

    write_image(tile, smear(300, 200, [(100, 100), (200, 120)], 12))
    broken = tmp_path / "broken.svs"
    broken.write_bytes(b"II*\x00" + b"\x00" * 40)
    out = tmp_path / "out"
    summary = scan([str(tile), str(slides["tif"]), str(broken)], out,
                   _options(slide_model, exports=("geojson", "coco"), save_overlays=True))  # fmt: skip
    rows = _rows(out)
    by_tile = {r["tile"]: r for r in rows}
    assert by_tile[str(tile)]["nucleated"] == "2" and by_tile[str(tile)]["sample"] == "p1"
    assert by_tile[str(broken)]["status"] == "error" and summary.tiles_failed == 1
    assert "broken.svs: cannot open as a whole-slide image" in by_tile[str(broken)]["error"]

    geo = {p.name: json.loads(p.read_text()) for p in (out / "geojson").iterdir()}
    assert len(geo) == 2  # one per tile, one per slide (not one per region)
    slide_fc = next(v for k, v in geo.items() if k.endswith("smear.tif.geojson"))
    centres = sorted(
        ((ring[0][0] + ring[2][0]) / 2, (ring[0][1] + ring[2][1]) / 2)
        for ring in (f["geometry"]["coordinates"][0] for f in slide_fc["features"])
    )
    assert len(centres) == len(DISCS)
    for (cx, cy), (x, y) in zip(centres, sorted(DISCS)):
        assert abs(cx - x) <= 6 and abs(cy - y) <= 6  # level-0 pixels: overlays the slide

    images = json.loads((out / "coco_images.json").read_text())["images"]
    slide_image = next(i for i in images if i["file_name"] == str(slides["tif"]))
    assert (slide_image["width"], slide_image["height"]) == (2048, 1536)
    coco = json.loads((out / "coco_detections.json").read_text())
    assert sum(d["image_id"] == slide_image["id"] for d in coco) == len(DISCS)
    overlays = list((out / "overlays").iterdir())
    assert len(overlays) == len(rows) - 1  # every ok tile and region


def _same_cell_pairs(dets: list[dict]) -> list[tuple[str, str]]:
    """Pairs of one kind of cell from two regions whose boxes overlap by more than half of
    the smaller box: one cell counted twice across a seam."""
    from hemoscan.inference.postprocess import nms_group

    pairs = []
    for i, a in enumerate(dets):
        for b in dets[i + 1 :]:
            if a["tile"] == b["tile"] or nms_group(a["label"]) != nms_group(b["label"]):
                continue
            w = min(a["x2"], b["x2"]) - max(a["x1"], b["x1"])
            h = min(a["y2"], b["y2"]) - max(a["y1"], b["y1"])
            smaller = min((a["x2"] - a["x1"]) * (a["y2"] - a["y1"]),
                          (b["x2"] - b["x1"]) * (b["y2"] - b["y1"]))  # fmt: skip
            if w > 0 and h > 0 and w * h > 0.5 * smaller:
                pairs.append((a["tile"], b["tile"]))
    return pairs


SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets"


@pytest.mark.skipif(not (SHARED / "segpc-marrow").is_dir(), reason="needs ../shared/datasets")
def test_the_shipped_model_counts_seam_cells_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real default model on 16 real marrow fields laid out as a 2048 px pyramidal TIFF at
    0.25 µm per pixel (regions of 1024 model pixels): no cell is counted by two regions."""
    import cv2
    import numpy as np

    from hemoscan.inference import seams
    from hemoscan.models.loading import DEFAULT_MODEL, load_model

    fields = sorted((SHARED / "segpc-marrow" / "images").glob("*"))[4::5][:16]  # held out
    rgb = [cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in fields]
    image = np.concatenate([np.concatenate(rgb[r * 4 : r * 4 + 4], 1) for r in range(4)], 0)
    slide = write_pyramidal_tiff(tmp_path / "marrow" / "marrow.tif", image, mpp=0.25)
    model = load_model(DEFAULT_MODEL)
    options = _options(DEFAULT_MODEL, workers=0)
    scan([str(slide)], tmp_path / "out", options, model=model)
    dets = _detections(tmp_path / "out")
    assert len({d["tile"] for d in dets}) >= 9 and len(dets) > 500
    assert _same_cell_pairs(dets) == []
    # the same scan without the seam check counts cells twice: the check is not idle
    monkeypatch.setattr(seams, "SEAM_IOS", 2.0)
    scan([str(slide)], tmp_path / "unchecked", options, model=model)
    assert len(_same_cell_pairs(_detections(tmp_path / "unchecked"))) > 0
