"""Verdicts from a CSV and from a GeoJSON re-classified in QuPath (``hemoscan review --apply``)."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from hemoscan.cli.app import app
from hemoscan.pipeline import export
from hemoscan.review.index import ReviewIndex
from hemoscan.review.log import REVIEW_LOG, ReviewLog
from tests.io.test_result_exports import _qupath_read, _qupath_write


def _apply(scan: Path, path: Path, *extra: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["review", str(scan), "--apply", str(path), "--reviewer", "dr c", *extra])


def _ids(scan: Path, label: str) -> list[str]:
    return [s.id for s in ReviewIndex(scan).suggestions if s.detection.label == label]


def test_csv_verdicts_are_recorded(scanned: Path, tmp_path: Path) -> None:
    hemo, macro = _ids(scanned, "hemophagocyte"), _ids(scanned, "macrophage")
    path = tmp_path / "verdicts.csv"
    path.write_text(
        "id,verdict,label,engulfed_rbc,engulfed_nucleated,engulfed_platelet\n"
        f"{hemo[0]},accept,,2,0,1\n{hemo[1]},reject,,,,\n{hemo[2]},relabel,macrophage,,,\n"
        f"'{macro[0]},relabel,hemophagocyte,1,1,0\n{macro[1]},accept,,,,\n\n"
    )
    result = _apply(scanned, path)
    assert result.exit_code == 0, result.output
    assert "5 verdict(s)" in result.output
    state = ReviewLog(scanned).latest()
    assert state[hemo[0]].engulfed == {"rbc": 2, "nucleated": 0, "platelet": 1}
    assert state[hemo[1]].verdict == "reject" and state[hemo[2]].label == "macrophage"
    assert state[macro[0]].label == "hemophagocyte" and state[macro[1]].verdict == "accept"
    assert {v.source for v in state.values()} == {"csv:verdicts.csv"} and state[hemo[0]].reviewer == "dr c"
    headless = tmp_path / "plain.csv"  # no header: the columns in their documented order
    headless.write_text(f"{hemo[3]},relabel,artefact\n")
    assert _apply(scanned, headless).exit_code == 0
    assert ReviewLog(scanned).latest()[hemo[3]].label == "artefact"


def test_bad_csv_rows_are_refused_whole_and_unknown_ids_reported(scanned: Path, tmp_path: Path) -> None:
    hemo = _ids(scanned, "hemophagocyte")
    bad = {
        f"id,verdict\n{hemo[0]},maybe\n": "line 2 (id '%s'): verdict must be accept, reject or relabel",
        f"id,verdict,label\n{hemo[0]},relabel,\n": "line 2 (id '%s'): relabel needs a label",
        f"id,verdict,label\n{hemo[0]},reject,macrophage\n": "reject takes no label",
        f"id,verdict,engulfed_rbc,engulfed_nucleated,engulfed_platelet\n{hemo[0]},accept,1,x,0\n": "engulfed_nucleated must be a whole number",
        f"id,verdict\n{hemo[0]},accept\n{hemo[0]},reject\n": "line 3 (id '%s'): the id is also on line 2",
        "id,verdict,colour\n": "line 1: the header must name columns",
        f"id,verdict,label,engulfed_rbc,engulfed_nucleated,engulfed_platelet\n{hemo[0]},relabel,macrophage,1,0,0\n": "engulfed counts are for a final hemophagocyte",
    }
    for i, (text, message) in enumerate(bad.items()):
        path = tmp_path / f"bad{i}.csv"
        path.write_text(text)
        result = _apply(scanned, path)
        assert result.exit_code == 2, (text, result.output)
        assert str(path) in result.output and message.replace("%s", hemo[0]) in result.output, result.output
        assert "Traceback" not in result.output
    assert not (scanned / REVIEW_LOG).exists()  # nothing recorded from a bad file
    path = tmp_path / "unknown.csv"
    path.write_text(f"id,verdict\n{hemo[0]},accept\nd0123456789abcdef,reject\n")
    result = _apply(scanned, path)
    assert result.exit_code == 1 and "d0123456789abcdef" in result.output
    assert set(ReviewLog(scanned).latest()) == {hemo[0]}
    assert "needs --reviewer" in CliRunner().invoke(app, ["review", str(scanned), "--apply", str(path)]).output


def _qupath_round_trip(path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    """What QuPath reads of our GeoJSON, edited by ``edit(objects)``, written back by QuPath."""
    fc = json.loads(path.read_text())
    objects = [_qupath_read(f) for f in fc["features"]]
    objects = edit(objects)
    out = path.with_name("from-qupath.geojson")
    out.write_text(json.dumps({"type": "FeatureCollection", "features": [_qupath_write(o) for o in objects]}))
    return out


def test_a_geojson_reclassified_in_qupath_is_applied(scanned: Path) -> None:
    export(scanned, ["geojson"])
    first = sorted((scanned / "geojson").glob("*.geojson"))[0]

    def edit(objects):  # type: ignore[no-untyped-def]
        hemo = next(o for o in objects if o["class"] == "hemophagocyte")
        macro = next(o for o in objects if o["class"] == "macrophage")
        macro["class"] = "Other cell"
        engulfed_rbc = [o for o in objects if o["class"] == "engulfed_rbc"]
        objects.remove(engulfed_rbc[0])  # the pathologist deleted one engulfed red cell
        for o in objects:
            o["metadata"] = {}  # as QuPath before v0.6 writes detections: ids and names remain
        x1, y1 = hemo["geometry"]["coordinates"][0][0]
        drawn = {"id": None, "type": "annotation", "name": None, "class": "engulfed_platelet", "metadata": {},
                 "geometry": {"type": "Polygon", "coordinates": [[[x1 + 5, y1 + 5], [x1 + 15, y1 + 5],
                              [x1 + 15, y1 + 15], [x1 + 5, y1 + 15], [x1 + 5, y1 + 5]]]},
                 "measurements": {}}  # fmt: skip
        missed = {**drawn, "class": "Hemophagocyte", "geometry": {"type": "Polygon", "coordinates": [[[250, 100], [300, 100], [300, 150], [250, 150], [250, 100]]]}}
        return [*objects, drawn, missed]

    path = _qupath_round_trip(first, edit)
    result = _apply(scanned, path)
    assert result.exit_code == 0, result.output
    state = ReviewLog(scanned).latest()
    index = ReviewIndex(scanned)
    tile = index.by_id[next(iter(state))].tile
    hemo = next(s for s in index.suggestions if s.tile == tile and s.detection.label == "hemophagocyte")
    macro = next(s for s in index.suggestions if s.tile == tile and s.detection.label == "macrophage")
    assert state[hemo.id].verdict == "accept"
    assert state[hemo.id].engulfed == {"rbc": 1, "nucleated": 1, "platelet": 1}
    assert (state[macro.id].verdict, state[macro.id].label) == ("relabel", "other_cell")
    (added,) = [v for v in state.values() if v.added]
    assert (added.label, added.tile, added.box) == ("hemophagocyte", tile, (250.0, 100.0, 300.0, 150.0))
    assert {v.source for v in state.values()} == {"geojson:from-qupath.geojson"}
    assert len(state) == 3  # other tiles' suggestions stay pending


def test_only_changed_leaves_unchanged_objects_pending(scanned: Path) -> None:
    export(scanned, ["geojson"])
    first = sorted((scanned / "geojson").glob("*.geojson"))[0]

    def edit(objects):  # type: ignore[no-untyped-def]
        next(o for o in objects if o["class"] == "hemophagocyte")["class"] = "rejected"
        return objects

    result = _apply(scanned, _qupath_round_trip(first, edit), "--only-changed")
    assert result.exit_code == 0 and "1 unchanged object(s) left pending" in result.output
    (v,) = ReviewLog(scanned).latest().values()
    assert v.verdict == "reject"


def test_bad_geojson_class_names_the_feature(scanned: Path) -> None:
    export(scanned, ["geojson"])
    first = sorted((scanned / "geojson").glob("*.geojson"))[0]

    def edit(objects):  # type: ignore[no-untyped-def]
        next(o for o in objects if o["class"] == "macrophage")["class"] = "Plasma cell"
        return objects

    result = _apply(scanned, _qupath_round_trip(first, edit))
    assert result.exit_code == 2 and "feature 2 (id d" in result.output and "'Plasma cell'" in result.output
    assert not (scanned / REVIEW_LOG).exists()
