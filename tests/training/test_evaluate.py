"""hemoscan_training.evaluate and `hemoscan evaluate` on tiny synthetic sets (seconds)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from hemoscan_training.evaluate import (
    THRESHOLDS_SIDECAR,
    EvaluationError,
    annotated_suite,
    build_suites,
    evaluate,
    run_suite,
    training_record,
    tune_thresholds,
    write_thresholds,
)
from typer.testing import CliRunner

from hemoscan.annotations import DatasetSpec
from hemoscan.cli.app import app
from hemoscan.models import load_model
from tests.conftest import disc_image, write_image

RADIUS = 12


def write_disc_coco(root: Path, n_images: int = 3, discs: int = 4, drop: int = 0) -> Path:
    """Disc images labelled ``nucleated`` (what tiny_blob finds); the last ``drop`` discs of
    each image are left unlabelled (they become false positives)."""
    images, anns = [], []
    for i in range(n_images):
        image, centres = disc_image(160, 128, discs, seed=i, radius=RADIUS)
        write_image(root / "images" / f"f{i}.png", image)
        images.append({"id": i + 1, "file_name": f"f{i}.png", "width": 160, "height": 128})
        for x, y in centres[: len(centres) - drop]:
            anns.append({"id": len(anns) + 1, "image_id": i + 1, "category_id": 1,
                         "bbox": [x - RADIUS, y - RADIUS, 2 * RADIUS, 2 * RADIUS]})  # fmt: skip
    path = root / "annotations.json"
    path.write_text(json.dumps({"images": images, "annotations": anns,
                                "categories": [{"id": 1, "name": "wbc"}]}))  # fmt: skip
    return path


def test_cli_evaluate_writes_json_for_a_coco_set(tiny_model_dir: Path, tmp_path: Path) -> None:
    coco = write_disc_coco(tmp_path / "set")
    out = tmp_path / "metrics.json"
    result = CliRunner().invoke(
        app,
        ["evaluate", "--model", str(tiny_model_dir), "--data", f"coco:{coco}",
         "--classes", "wbc=nucleated", "--out", str(out), "-q"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "REAL" in result.output and "nucleated" in result.output
    metrics = json.loads(out.read_text())
    section = metrics["sections"][str(coco)]
    assert section["data"] == "real" and section["images"] == 3
    assert section["objects"] == {"nucleated": 12}
    det = section["detection"]["nucleated"]
    assert det["ap50"] == pytest.approx(1.0) and det["recall"] == pytest.approx(1.0)
    assert det["precision"] == pytest.approx(1.0) and det["threshold"] == 0.5
    assert 0 < det["ap50_95"] <= 1.0
    assert metrics["model"]["name"] == "tiny-test" and metrics["thresholds"]["nucleated"] == 0.5
    # a set the user says is composed is labelled so, in the table and the JSON
    args = ["evaluate", "--model", str(tiny_model_dir), "--data", f"coco:{coco}", "--composed"]
    result = CliRunner().invoke(app, [*args, "--classes", "wbc=nucleated", "--limit", "1",
                                      "--out", str(out), "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "COMPOSED" in result.output and "REAL" not in result.output
    section = json.loads(out.read_text())["sections"][str(coco)]
    assert section["data"] == "composed" and section["images"] == 1


def test_cli_evaluate_reports_bad_data_specs(tiny_model_dir: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    r = runner.invoke(app, ["evaluate", "--model", str(tiny_model_dir), "--data", "nonsense"])
    assert r.exit_code == 2 and "shared:NAMES" in r.output
    r = runner.invoke(
        app, ["evaluate", "--model", str(tiny_model_dir), "--data", "shared:txl-test"]
    )
    assert r.exit_code == 2 and "unknown suite 'txl-test'" in r.output
    coco = write_disc_coco(tmp_path / "set", n_images=1)
    r = runner.invoke(app, ["evaluate", "--model", str(tiny_model_dir), "--data", f"coco:{coco}"])
    assert r.exit_code == 2 and "class_map" in r.output  # 'wbc' is not a hemoscan class


def test_unlabelled_discs_lower_precision(tiny_model, tmp_path: Path) -> None:
    coco = write_disc_coco(tmp_path / "set", n_images=2, discs=4, drop=1)
    spec = DatasetSpec("coco", coco, class_map={"wbc": "nucleated"})
    metrics = evaluate(tiny_model, [annotated_suite(spec, tiny_model)])
    det = metrics["sections"][str(coco)]["detection"]["nucleated"]
    assert (det["tp"], det["fp"], det["fn"]) == (6, 2, 0)
    assert det["precision"] == pytest.approx(0.75)


def test_hemophagocytes_and_engulfed_types_end_to_end(hemophagocyte_model, tmp_path: Path) -> None:
    """The scripted model finds one hemophagocyte (2 rbc + 1 nucleated inside), a macrophage and
    a free rbc; a truth with a platelet in place of the nucleated cell gives a matched host
    with wrong engulfed counts, 2 of 3 engulfed cells typed right."""
    image = np.full((256, 256, 3), 200, np.uint8)
    write_image(tmp_path / "sample_a" / "t.png", image)

    def box(cx: float, cy: float, w: float, h: float) -> list[float]:
        return [cx - w / 2, cy - h / 2, w, h]

    cats = ["hemophagocyte", "engulfed_rbc", "engulfed_platelet", "macrophage", "rbc", "nucleated"]
    anns = [
        (0, box(100, 100, 120, 110)), (1, box(80, 90, 24, 24)), (1, box(120, 110, 24, 24)),
        (2, box(100, 70, 30, 30)), (3, box(200, 200, 90, 80)), (4, box(240, 40, 30, 30)),
    ]  # fmt: skip
    coco = {
        "images": [{"id": 1, "file_name": "sample_a/t.png", "width": 256, "height": 256}],
        "annotations": [{"id": k + 1, "image_id": 1, "category_id": c + 1, "bbox": b}
                        for k, (c, b) in enumerate(anns)],
        "categories": [{"id": i + 1, "name": n} for i, n in enumerate(cats)],
    }  # fmt: skip
    (tmp_path / "a.json").write_text(json.dumps(coco))
    every = ("rbc", "platelet", "nucleated", "macrophage", "hemophagocyte", "engulfed_rbc",
             "engulfed_nucleated", "engulfed_platelet")  # fmt: skip
    spec = DatasetSpec("coco", tmp_path / "a.json", images=tmp_path, supervised=every)
    metrics = evaluate(hemophagocyte_model, [annotated_suite(spec, hemophagocyte_model)])
    s = metrics["sections"][spec.name]
    h = s["hemophagocyte"]
    assert (h["true"], h["tp"], h["fp"], h["fn"]) == (1, 1, 0, 0)
    assert h["engulfed_exact"] == 0.0 and h["engulfed_cell_type_accuracy"] == pytest.approx(
        2 / 3, abs=1e-4
    )
    assert h["engulfed_cells"]["confusion_true_to_predicted"]["platelet"]["nucleated"] == 1
    ca = s["count_agreement"]
    # truth: hemophagocyte + macrophage = 2 nucleated, 1 hemophagocyte -> 500 per 1000; same predicted
    assert ca["pairs"] == [{"sample": "sample_a", "true_per_1000": 500.0, "pred_per_1000": 500.0}]
    assert s["detection"]["rbc"]["ap50"] == pytest.approx(1.0)
    assert s["calls_per_100_fields"] == {"hemophagocyte": 100.0, "macrophage": 100.0}


def test_tuning_writes_thresholds_into_a_copy_of_the_model(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "model"
    shutil.copytree(tiny_model_dir, folder)
    model = load_model(str(folder))
    coco = write_disc_coco(tmp_path / "dev", n_images=2, drop=1)
    (suite,) = build_suites([f"coco:{coco}"], model, class_map={"wbc": "nucleated"})
    runs = run_suite(model, suite, operating_pass=False)
    tuning = tune_thresholds(model, [(suite, runs)])
    assert set(tuning.thresholds) == {"nucleated"}
    assert "rbc" in tuning.untuned  # no red cells in the tuning data
    # every disc scores about the same: the unlabelled one cannot be told apart, F1 is flat,
    # and ties go to the highest threshold still keeping every disc
    scores = [d.score for r in runs for d in r.low or [] if d.label == "nucleated"]
    assert tuning.thresholds["nucleated"] <= min(scores)
    reloaded = write_thresholds(model, tuning)
    assert reloaded.config.score_thresholds == tuning.thresholds
    assert reloaded.sha256 == model.sha256
    assert json.loads((folder / THRESHOLDS_SIDECAR).read_text())["thresholds"] == tuning.thresholds
    # the shipped model is refused, reporting suites may not be tuned on
    with pytest.raises(EvaluationError, match="shipped model"):
        write_thresholds(load_model("hemoscan-lite0-v2"), tuning)
    with pytest.raises(EvaluationError, match="reporting data"):
        tune_thresholds(model, [(type(suite)(**{**suite.__dict__, "name": "txl-val"}), runs)])


def test_training_record_sums_resumed_segments(tmp_path: Path) -> None:
    rows = ["epoch,step,images_per_s,wall_s", "0,10,3.0,100", "1,20,4.0,210", "2,30,5.0,90"]
    (tmp_path / "results.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "config.json").write_text(json.dumps({"batch_size": 8}))
    (tmp_path / "best").mkdir()
    rec = training_record(tmp_path / "best")
    assert rec is not None and rec["wall_s"] == 300.0 and rec["images_per_s_median"] == 4.0
    assert rec["images"] == 240 and rec["images_per_s_overall"] == 0.8
    # hemoscan train: wall_s already summed over resumes, batch size in resolved.yaml
    rows = ["epoch,step,images_per_s,wall_s", "0,10,3.0,100", "1,20,4.0,300"]
    (tmp_path / "results.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "config.json").unlink()
    (tmp_path / "resolved.yaml").write_text("data:\n  batch_size: 6\n")
    rec = training_record(tmp_path / "best")
    assert rec is not None and rec["wall_s"] == 300.0 and rec["images"] == 120


def test_engulfed_cells_of_hosts_below_the_host_threshold_are_dropped_for_tuning() -> None:
    from hemoscan_training.evaluate import _class_index, _without_hosts_below, detections_to_arrays

    from hemoscan.datamodel import Detection, EngulfedCell

    cell = EngulfedCell("rbc", 0.9, 10, 10, 20, 20)
    strong = Detection("hemophagocyte", 0.8, 0, 0, 50, 50, (cell,))
    weak = Detection("hemophagocyte", 0.2, 100, 0, 150, 50, (cell, cell))
    free = Detection("rbc", 0.1, 200, 0, 210, 10)
    kept = _without_hosts_below([strong, weak, free], 0.5)
    assert kept == [strong, free]
    classes = ("rbc", "hemophagocyte", "engulfed_rbc")
    arrays = detections_to_arrays(kept, _class_index(classes))
    assert sorted(arrays.labels.tolist()) == [0, 1, 2]  # one free rbc, one host, one engulfed rbc


def test_cli_evaluate_an_int8_onnx_export(tiny_model, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from hemoscan.models.export import export_onnx

    coco = write_disc_coco(tmp_path / "set")
    folder = export_onnx(tiny_model, tmp_path / "int8", quantize="int8",
                         calibration=[str(tmp_path / "set" / "images")])  # fmt: skip
    out = tmp_path / "metrics.json"
    args = ["evaluate", "--model", str(folder), "--backend", "onnx", "--data", f"coco:{coco}",
            "--classes", "wbc=nucleated"]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert "backend onnx (int8-static-qdq)" in result.output
    metrics = json.loads(out.read_text())
    assert metrics["settings"]["backend"] == "onnx"
    assert metrics["settings"]["quantization"] == "int8-static-qdq"
    assert metrics["model"]["sha256"] == tiny_model.sha256
    assert len(metrics["model"]["onnx_sha256"]) == 64
    det = metrics["sections"][str(coco)]["detection"]["nucleated"]
    assert det["recall"] == pytest.approx(1.0) and det["precision"] == pytest.approx(1.0)
    result = CliRunner().invoke(app, [*args, "--tune-thresholds"])
    assert result.exit_code == 2 and "without --tune-thresholds" in result.output
    plain = ["evaluate", "--model", str(tiny_model.folder)]
    result = CliRunner().invoke(app, [*plain, "--data", f"coco:{coco}", "--classes",
                                      "wbc=nucleated", "--backend", "onnx"])  # fmt: skip
    assert result.exit_code == 2 and "hemoscan export" in result.output  # not an ONNX folder
