"""Tests for the QuPath GeoJSON and COCO exporters."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hemoscan.datamodel import CELL_CLASSES, Detection, TileResult, detection_id
from hemoscan.io.result_exports import CLASS_COLORS, object_uuid, write_coco, write_geojson
from tests.conftest import sample_detections

RBC, HEMO, PLATELET = sample_detections()


def _results() -> list[TileResult]:
    return [
        TileResult("s1", "s1/tile_0.png", "ok", 512, 384, (RBC, HEMO)),
        TileResult("s1", "s1/tile_1.png", "ok", 512, 512, (PLATELET,)),
        TileResult("s1", "s1/empty.png", "ok", 256, 256, ()),
        TileResult("s1", "s1/broken.png", "error", error="cannot decode"),
    ]


def _load(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def _box_ring(x1: float, y1: float, x2: float, y2: float) -> list[list[float]]:
    return [[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]]


def test_class_colors_cover_classes_and_are_distinct() -> None:
    assert set(CLASS_COLORS) == set(CELL_CLASSES)
    assert len(set(CLASS_COLORS.values())) == len(CELL_CLASSES)
    for color in CLASS_COLORS.values():
        assert len(color) == 3 and all(isinstance(c, int) and 0 <= c <= 255 for c in color)


def test_geojson_files_only_for_ok_tiles(tmp_path: Path) -> None:
    paths = write_geojson(_results(), tmp_path)
    assert len(paths) == 3
    assert all(p.parent == tmp_path / "geojson" and p.suffix == ".geojson" for p in paths)
    assert sorted(p.name for p in (tmp_path / "geojson").iterdir()) == sorted(p.name for p in paths)
    assert not any("broken" in p.name for p in paths)
    empty = _load(next(p for p in paths if "empty" in p.name))
    assert empty == {"type": "FeatureCollection", "features": []}


def test_geojson_structure(tmp_path: Path) -> None:
    paths = write_geojson(_results(), tmp_path)
    fc = _load(paths[0])
    assert fc["type"] == "FeatureCollection"
    feats = fc["features"]
    assert len(feats) == 4
    for feat in feats:
        assert feat["type"] == "Feature"
        props = feat["properties"]
        assert props["objectType"] == "detection"
        assert props["isLocked"] is False
        color = props["classification"]["color"]
        assert len(color) == 3 and all(isinstance(c, int) for c in color)
        ring = feat["geometry"]["coordinates"][0]
        assert feat["geometry"]["type"] == "Polygon"
        assert ring[0] == ring[-1] and len(ring) == 5
        assert all(isinstance(v, (int, float)) for v in props["measurements"].values())
    assert len({f["id"] for f in feats}) == 4

    rbc, hemo, eng_rbc, eng_gran = feats
    rbc_class = {"name": "rbc", "color": list(CLASS_COLORS["rbc"])}
    assert rbc["properties"]["classification"] == rbc_class
    assert rbc["geometry"]["coordinates"] == [_box_ring(10.12, 20.46, 30.0, 40.0)]
    assert rbc["properties"]["measurements"] == {"score": 0.5}

    assert hemo["properties"]["classification"]["name"] == "hemophagocyte"
    assert hemo["geometry"]["coordinates"] == [_box_ring(100.0, 50.0, 180.5, 140.25)]
    m = hemo["properties"]["measurements"]
    assert m["score"] == 0.91235
    assert m["engulfed_rbc"] == 1
    assert m["engulfed_nucleated"] == 1
    assert m["engulfed_platelet"] == 0
    assert m["engulfed_granulocyte"] == 1

    assert eng_rbc["properties"]["classification"]["name"] == "engulfed_rbc"
    assert eng_gran["properties"]["classification"]["name"] == "engulfed_granulocyte"
    assert eng_rbc["geometry"]["coordinates"] == [_box_ring(110.0, 60.0, 120.0, 70.0)]
    assert eng_gran["properties"]["measurements"] == {"score": 0.7}
    for eng in (eng_rbc, eng_gran):
        assert eng["properties"]["parent_id"] == hemo["id"]
        assert eng["properties"]["objectType"] == "detection"
    assert "parent_id" not in hemo["properties"]


def _qupath_read(feature: dict) -> dict:
    """What QuPath keeps of a GeoJSON feature, as its reader does (qupath-core
    ``PathObjectTypeAdapters.PathObjectTypeAdapter.read``, v0.4-0.6): ``id`` only when it parses
    as a UUID; ``name`` as a string; ``classification``; ``measurements`` (an object or a list of
    name/value pairs); ``metadata``: its primitive values, as strings (kept on detections from
    v0.6); unknown properties (``parent_id``) are dropped."""
    import uuid

    props = feature.get("properties", {})
    try:
        object_id = str(uuid.UUID(feature["id"]))
    except (KeyError, ValueError):
        object_id = None
    measurements = props.get("measurements", {})
    if isinstance(measurements, list):
        measurements = {m["name"]: m["value"] for m in measurements}
    metadata = {k: (str(v).lower() if isinstance(v, bool) else str(v))
                for k, v in props.get("metadata", {}).items() if not isinstance(v, (dict, list))}  # fmt: skip
    return {"id": object_id, "type": props.get("objectType", "annotation"), "name": props.get("name"),
            "class": (props.get("classification") or {}).get("name"), "geometry": feature["geometry"],
            "measurements": {k: float(v) for k, v in measurements.items()}, "metadata": metadata}  # fmt: skip


def _qupath_write(obj: dict) -> dict:
    """The feature QuPath writes for an object it read (``PathObjectTypeAdapter.write``)."""
    props = {"objectType": obj["type"], "classification": {"name": obj["class"]},
             "measurements": obj["measurements"]}  # fmt: skip
    if obj["name"] is not None:
        props["name"] = obj["name"]
    if obj["metadata"]:
        props["metadata"] = obj["metadata"]
    return {"type": "Feature", "id": obj["id"], "geometry": obj["geometry"], "properties": props}


def test_qupath_keeps_the_host_link_names_and_ids_through_a_round_trip(tmp_path: Path) -> None:
    fc = _load(write_geojson(_results(), tmp_path)[0])
    objects = [_qupath_read(_qupath_write(_qupath_read(f))) for f in fc["features"]]
    rbc, hemo, eng_rbc, eng_gran = objects
    assert [o["id"] for o in objects] == [f["id"] for f in fc["features"]]  # object IDs survive
    hid = detection_id("s1", "s1/tile_0.png", 1)  # the id of its line in detections.jsonl
    assert hemo["id"] == object_uuid(hid)
    assert hemo["name"] == f"hemophagocyte {hid}: 1 rbc, 1 nucleated (1 granulocyte)"
    assert rbc["name"] is None and rbc["metadata"]["detection"] == "s1/tile_0.png#0"
    assert rbc["metadata"]["hemoscan_id"] == detection_id("s1", "s1/tile_0.png", 0)
    assert hemo["metadata"] == {"hemoscan_id": hid, "detection": "s1/tile_0.png#1"}
    for cell, j in ((eng_rbc, 0), (eng_gran, 1)):
        assert cell["metadata"]["host_id"] == hid  # read from metadata (QuPath >= 0.6)
        assert cell["name"].endswith(f"in hemophagocyte {hid}")  # and from the name
        assert cell["metadata"]["hemoscan_id"] == f"{hid}/{j}"
        assert cell["metadata"]["detection"] == f"s1/tile_0.png#1/{j}"
    assert eng_gran["name"].startswith("engulfed granulocyte")
    assert "parent_id" not in str(objects)  # what QuPath would have lost without the above
    assert hemo["measurements"]["engulfed_nucleated"] == 1.0


def test_geojson_ids_are_deterministic(tmp_path: Path) -> None:
    a = _load(write_geojson(_results(), tmp_path / "a")[0])
    b = _load(write_geojson(_results(), tmp_path / "b")[0])
    assert [f["id"] for f in a["features"]] == [f["id"] for f in b["features"]]


def test_geojson_safe_unique_names(tmp_path: Path) -> None:
    tiles = [
        "a/tile.png",
        "b/tile.png",
        "/abs/dir with space/tïle:*?.png",
        "C:\\win\\dir\\tile.png",
        "../up/tile.png",
        "a__tile.png",
        "A/TILE.png",
    ]
    results = [TileResult("s", t, "ok", 10, 10, (RBC,)) for t in tiles]
    paths = write_geojson(results, tmp_path)
    assert len(paths) == len(tiles)
    assert len({p.name.lower() for p in paths}) == len(tiles)
    for p in paths:
        assert p.parent == tmp_path / "geojson" and p.is_file()
        assert not p.name.startswith(".")
        assert all(ch.isascii() and (ch.isalnum() or ch in "._-") for ch in p.name)
    assert paths[0].name == "a__tile.png.geojson"
    assert paths[1].name == "b__tile.png.geojson"
    assert not list((tmp_path / "geojson").glob("*.tmp"))


def test_coco_files(tmp_path: Path) -> None:
    images_path, dets_path = write_coco(_results(), tmp_path)
    assert images_path == tmp_path / "coco_images.json"
    assert dets_path == tmp_path / "coco_detections.json"
    ds = _load(images_path)
    assert ds["annotations"] == []
    assert ds["images"] == [
        {"id": 1, "file_name": "s1/tile_0.png", "width": 512, "height": 384},
        {"id": 2, "file_name": "s1/tile_1.png", "width": 512, "height": 512},
        {"id": 3, "file_name": "s1/empty.png", "width": 256, "height": 256},
    ]
    assert ds["categories"] == [
        {"id": i + 1, "name": c, "supercategory": "cell"} for i, c in enumerate(CELL_CLASSES)
    ]
    dets = _load(dets_path)
    assert dets[0] == {
        "image_id": 1,
        "category_id": 1,
        "bbox": [10.12, 20.46, 19.88, 19.54],
        "score": 0.5,
        "hemoscan_id": detection_id("s1", "s1/tile_0.png", 0),
    }
    assert dets[1]["bbox"] == [100.0, 50.0, 80.5, 90.25]
    assert dets[1]["engulfed"] == {"rbc": 1, "nucleated": 1, "platelet": 0, "granulocyte": 1}
    assert dets[2]["image_id"] == 2 and "engulfed" not in dets[2]
    assert not list(tmp_path.glob("*.tmp"))


def test_coco_loadres(tmp_path: Path) -> None:
    coco_mod = pytest.importorskip("pycocotools.coco")
    images_path, dets_path = write_coco(_results(), tmp_path)
    gt = coco_mod.COCO(str(images_path))
    res = gt.loadRes(str(dets_path))
    assert sorted(gt.getImgIds()) == [1, 2, 3]
    assert all(img["file_name"] != "s1/broken.png" for img in gt.dataset["images"])
    names = {a["id"]: res.loadCats(a["category_id"])[0]["name"] for a in res.anns.values()}
    assert sorted(names.values()) == ["hemophagocyte", "platelet", "rbc"]
    hemo = next(a for a in res.anns.values() if a["category_id"] == 5)
    assert hemo["image_id"] == 1
    assert hemo["bbox"] == [100.0, 50.0, 80.5, 90.25]
    assert hemo["area"] == pytest.approx(80.5 * 90.25)
    (platelet,) = res.loadAnns(res.getAnnIds(imgIds=[2]))
    assert platelet["category_id"] == CELL_CLASSES.index("platelet") + 1


def test_coco_rejects_unknown_label(tmp_path: Path) -> None:
    bad = TileResult("s", "t.png", "ok", 5, 5, (Detection("blob", 0.5, 0, 0, 1, 1),))
    with pytest.raises(ValueError, match="blob"):
        write_coco([bad], tmp_path)
    assert not (tmp_path / "coco_images.json").exists()
