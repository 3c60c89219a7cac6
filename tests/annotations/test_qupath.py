"""QuPath GeoJSON reader, including a round trip through hemoscan's own export."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hemoscan.annotations import AnnotationError, AnnotationWarning, DatasetSpec, read_qupath
from hemoscan.datamodel import Detection, TileResult
from hemoscan.io.result_exports import write_geojson
from tests.annotations.util import blank, by_name, write_json
from tests.conftest import sample_detections


def _feature(name: str | None, geometry: dict, object_type: str = "annotation", **props) -> dict:
    p = {"objectType": object_type, **props}
    if name is not None:
        p["classification"] = {"name": name, "color": [255, 0, 0]}
    return {"type": "Feature", "geometry": geometry, "properties": p}


def _poly(*points: tuple[float, float]) -> dict:
    return {"type": "Polygon", "coordinates": [[*map(list, points), list(points[0])]]}


# a concave (L-shaped) hemophagocyte: its box contains (75, 75) but the polygon does not
HOST = _poly((0, 0), (100, 0), (100, 50), (50, 50), (50, 100), (0, 100))
CMAP = {
    "Hemophagocyte": "hemophagocyte",
    "RBC": "rbc",
    "Engulfed RBC": "engulfed_rbc",
    "Other": "drop",
}


def test_polygons_to_boxes_and_parent_inference(tmp_path: Path) -> None:
    blank(tmp_path / "images" / "field.png", 200, 150)
    blank(tmp_path / "images" / "empty.png", 20, 20)
    features = [
        _feature("Hemophagocyte", HOST),
        _feature("Engulfed RBC", _poly((20, 20), (30, 20), (30, 30))),  # centre inside the L
        _feature(
            "Engulfed RBC", _poly((70, 70), (80, 70), (80, 80), (70, 80))
        ),  # in box, not polygon
        _feature(
            "RBC",
            {
                "type": "MultiPolygon",
                "coordinates": [
                    [[[110, 10], [120, 10], [120, 20], [110, 10]]],
                    [[[130, 5], [140, 30], [125, 30], [130, 5]]],
                ],
            },
            "detection",
        ),
        _feature("Other", _poly((1, 1), (2, 1), (2, 2))),
        _feature("RBC", _poly((150, 100), (160, 100), (160, 110)), "tile"),  # not read
    ]
    write_json(
        tmp_path / "geojson" / "field.geojson", {"type": "FeatureCollection", "features": features}
    )
    write_json(tmp_path / "geojson" / "orphan.geojson", [])
    with pytest.warns(AnnotationWarning) as caught:
        recs = by_name(read_qupath(DatasetSpec("qupath", tmp_path, CMAP)))
    text = " ".join(str(w.message) for w in caught)
    assert "orphan.geojson" in text and "empty.png" in text
    r = recs["field.png"]
    assert r.labels == ("hemophagocyte", "engulfed_rbc", "engulfed_rbc", "rbc")
    np.testing.assert_allclose(
        r.boxes, [[0, 0, 100, 100], [20, 20, 30, 30], [70, 70, 80, 80], [110, 5, 140, 30]]
    )
    assert r.parents == (-1, 0, -1, -1)
    assert r.supervised == {"hemophagocyte", "rbc", "engulfed_rbc"}
    assert len(recs["empty.png"]) == 0


def test_unclassified_points_and_bad_geometry(tmp_path: Path) -> None:
    blank(tmp_path / "a.png", 50, 50)
    path = tmp_path / "a.png.geojson"  # QuPath-style name with the image extension
    write_json(path, [_feature(None, _poly((1, 1), (5, 1), (5, 5)))])
    with pytest.raises(AnnotationError, match="source class 'unclassified'"):
        read_qupath(DatasetSpec("qupath", tmp_path, CMAP))
    (rec,) = read_qupath(DatasetSpec("qupath", tmp_path, {"unclassified": "ignore"}))
    np.testing.assert_allclose(rec.ignore, [[1, 1, 5, 5]])

    write_json(path, [_feature("RBC", {"type": "Point", "coordinates": [10, 20]})])
    with pytest.raises(AnnotationError, match="point_size"):
        read_qupath(DatasetSpec("qupath", tmp_path, CMAP))
    (rec,) = read_qupath(DatasetSpec("qupath", tmp_path, CMAP, options={"point_size": 8}))
    np.testing.assert_allclose(rec.boxes, [[6, 16, 14, 24]])

    write_json(path, [_feature("RBC", {"type": "LineString", "coordinates": [[1, 1], [3, 3]]})])
    with pytest.raises(AnnotationError, match=r"a.png.geojson: feature 1: unsupported geometry"):
        read_qupath(DatasetSpec("qupath", tmp_path, CMAP))
    write_json(
        path,
        {
            "type": "Feature",
            "geometry": _poly((1, 1), (5, 1), (5, 5)),
            "properties": {"classification": {"name": "RBC"}},
        },
    )
    (rec,) = read_qupath(DatasetSpec("qupath", tmp_path, CMAP))  # single feature, no objectType
    assert rec.labels == ("rbc",)


def test_round_trip_of_hemoscan_geojson_export(tmp_path: Path) -> None:
    rbc, hemo, platelet = sample_detections()
    # a second, overlapping hemophagocyte: explicit parent_id must win over containment
    inner = Detection("hemophagocyte", 0.8, 105.0, 55.0, 160.0, 120.0)
    dets = (rbc, hemo, inner, platelet)
    results = [
        TileResult("s1", "s1/tile_0.png", "ok", 256, 192, dets),
        TileResult("s1", "s1/empty.png", "ok", 64, 64, ()),
    ]
    blank(tmp_path / "images" / "s1" / "tile_0.png", 256, 192)
    blank(tmp_path / "images" / "s1" / "empty.png", 64, 64)
    write_geojson(results, tmp_path / "out")
    spec = DatasetSpec("qupath", tmp_path, labels=tmp_path / "out" / "geojson")
    recs = by_name(read_qupath(spec))
    r = recs["tile_0.png"]
    want_labels = (
        "rbc",
        "hemophagocyte",
        "engulfed_rbc",
        "engulfed_granulocyte",
        "hemophagocyte",
        "platelet",
    )
    assert r.labels == want_labels
    assert r.parents == (-1, -1, 1, 1, -1, -1)
    want = [
        [10.12, 20.46, 30, 40],
        [100, 50, 180.5, 140.25],
        [110, 60, 120, 70],
        [130, 80, 150, 100],
        [105, 55, 160, 120],
        [1, 2, 4, 6],
    ]
    np.testing.assert_allclose(r.boxes, want, atol=1e-4)
    assert len(recs["empty.png"]) == 0
    assert r.supervised == set(want_labels)  # supervised "all" = every class found


def test_parent_id_naming_no_feature_is_an_error(tmp_path: Path) -> None:
    blank(tmp_path / "a.png", 50, 50)
    write_json(
        tmp_path / "a.geojson",
        [_feature("Engulfed RBC", _poly((1, 1), (5, 1), (5, 5)), parent_id="nope")],
    )
    with pytest.raises(AnnotationError, match="parent_id 'nope'"):
        read_qupath(DatasetSpec("qupath", tmp_path, CMAP))
