"""hemoscan_training.evaluate and `hemoscan evaluate` on tiny synthetic sets (seconds)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import pytest
from hemoscan_training.evaluate import (
    DEFAULT_DATA_ROOT,
    REPORT_SUITES,
    THRESHOLDS_SIDECAR,
    EvaluationError,
    annotated_suite,
    build_suites,
    evaluate,
    training_record,
)
from hemoscan_training.evaluate.predict import run_suite
from hemoscan_training.evaluate.scoring import suite_metrics
from hemoscan_training.evaluate.suites import segpc_plasma_cells
from hemoscan_training.evaluate.tuning import tune_thresholds, write_thresholds
from typer.testing import CliRunner

from hemoscan.annotations import DatasetSpec
from hemoscan.cli.app import app
from hemoscan.datamodel import ScaleEstimate
from hemoscan.models import LoadedModel, ModelConfig, load_model
from hemoscan.models.onnx_format import INT8_FOLDER
from tests.conftest import HOST_CLASSES, ScriptedNet, disc_image, write_image

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
    assert det["ap50_ci95"] == pytest.approx([1.0, 1.0])  # every image perfect: every resample
    assert metrics["model"]["name"] == "tiny-test" and metrics["thresholds"]["nucleated"] == 0.5
    # a set the user says is composed is labelled so, in the table and the JSON
    args = ["evaluate", "--model", str(tiny_model_dir), "--data", f"coco:{coco}", "--composed"]
    result = CliRunner().invoke(app, [*args, "--classes", "wbc=nucleated", "--limit", "1",
                                      "--out", str(out), "-q"])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "COMPOSED" in result.output and "REAL" not in result.output
    section = json.loads(out.read_text())["sections"][str(coco)]
    assert section["data"] == "composed" and section["images"] == 1
    assert section["detection"]["nucleated"]["ap50_ci95"] is None  # one image: no interval


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
    from hemoscan_training.evaluate.scoring import class_index, detections_to_arrays
    from hemoscan_training.evaluate.tuning import _without_hosts_below

    from hemoscan.datamodel import Detection, EngulfedCell

    cell = EngulfedCell("rbc", 0.9, 10, 10, 20, 20)
    strong = Detection("hemophagocyte", 0.8, 0, 0, 50, 50, (cell,))
    weak = Detection("hemophagocyte", 0.2, 100, 0, 150, 50, (cell, cell))
    free = Detection("rbc", 0.1, 200, 0, 210, 10)
    kept = _without_hosts_below([strong, weak, free], 0.5)
    assert kept == [strong, free]
    classes = ("rbc", "hemophagocyte", "engulfed_rbc")
    arrays = detections_to_arrays(kept, class_index(classes))
    assert sorted(arrays.labels.tolist()) == [0, 1, 2]  # one free rbc, one host, one engulfed rbc


def test_cli_evaluate_an_int8_onnx_export(tiny_model, tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from hemoscan.model_export.onnx import export_onnx

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
    # an int8 export carried inside a model folder, as shipped models do: --precision int8
    carrier = tmp_path / "carrier"
    shutil.copytree(tiny_model.folder, carrier)
    shutil.copytree(folder, carrier / INT8_FOLDER)
    picked = ["evaluate", "--model", str(carrier), "--data", f"coco:{coco}", "--classes",
              "wbc=nucleated", "--backend", "onnx", "-q"]  # fmt: skip
    result = CliRunner().invoke(app, [*picked, "--precision", "int8", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text())["settings"]["quantization"] == "int8-static-qdq"
    result = CliRunner().invoke(app, [*picked, "--precision", "fp32"])
    assert result.exit_code == 2 and "no ONNX export" in result.output  # the carrier has no fp32 one


def _tiny_at(tiny_model: LoadedModel, rbc_diameter_px: float) -> LoadedModel:
    """The tiny model (24 px disc boxes in model-input pixels) told that it was trained at
    red cells of ``rbc_diameter_px``: its auto scale then rests on its nucleated discs."""
    config = replace(tiny_model.config, rbc_diameter_px=rbc_diameter_px)
    return LoadedModel(config, tiny_model.module, tiny_model.sha256, tiny_model.folder)


def test_an_auto_field_runs_both_passes_at_the_scale_the_operating_pass_chose(
    tiny_model, tmp_path: Path
) -> None:
    # discs of 24 px measured at scale 1 as nucleated cells: 20 * 1.6 / 24 = 1.33, one pass more
    model = _tiny_at(tiny_model, 20.0)
    coco = write_disc_coco(tmp_path / "set", n_images=2)
    spec = DatasetSpec("coco", coco, class_map={"wbc": "nucleated"})
    fixed = run_suite(model, annotated_suite(spec, model, 1.0))
    auto = annotated_suite(spec, model, "auto")
    assert [f.scale for f in auto.fields] == ["auto", "auto"]
    assert [f.oracle_scale for f in auto.fields] == [None, None]  # no labelled red cells
    # an oracle of 0.665: the chosen scale is twice it
    auto = replace(auto, fields=[replace(f, oracle_scale=0.665) for f in auto.fields])
    runs = run_suite(model, auto)
    from hemoscan.inference.predictor import Predictor

    image = auto.fields[0].load()[0]
    chosen = Predictor(model, device="cpu", scale="auto").predict_scaled([image])[0].scale
    assert chosen.source == "auto-nucleated" and chosen.scale != 1.0
    for r in runs:
        assert (r.scale.scale, r.scale.source) == (chosen.scale, chosen.source)  # as scan chooses
        # the network boxes 24 model px: 24 / scale input px in both passes (24 at scale 1)
        assert {round(d.x2 - d.x1, 3) for d in r.low or []} == {round(24 / chosen.scale, 3)}
        assert r.operating and {(d.x1, d.y1) for d in r.operating} <= {(d.x1, d.y1) for d in r.low or []}
    assert {round(d.x2 - d.x1, 3) for r in fixed for d in r.low or []} == {24.0}
    assert all(r.scale == ScaleEstimate(1.0, "given") for r in fixed)
    section = suite_metrics(model, auto, runs)
    a = section["auto_scale"]
    assert a["fields_by_source"] == {"auto-nucleated": 2}
    ratio = round(chosen.scale / 0.665, 3)
    assert a["ratio_to_oracle"]["n"] == 2 and a["ratio_to_oracle"]["median"] == pytest.approx(ratio, abs=1e-3)
    assert a["fields"][0]["scale"] == chosen.scale and a["fields"][0]["oracle"] == 0.665
    assert "auto_scale" not in suite_metrics(model, annotated_suite(spec, model, 1.0), fixed)


def test_cli_evaluate_accepts_scale_auto_for_annotated_data(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    coco = write_disc_coco(tmp_path / "set", n_images=1)
    out = tmp_path / "metrics.json"
    args = ["evaluate", "--model", str(tiny_model_dir), "--data", f"coco:{coco}",
            "--classes", "wbc=nucleated"]  # fmt: skip
    result = CliRunner().invoke(app, [*args, "--scale", "auto", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert "auto scale sources: default 1" in result.output
    section = json.loads(out.read_text())["sections"][str(coco)]
    # a 40 px model cannot trust 24 px boxes as cells of any size: scale 1, source default
    assert section["auto_scale"]["fields"][0]["source"] == "default"
    assert section["auto_scale"]["ratio_to_oracle"] is None  # no labelled red cells
    assert section["scale"].startswith("auto")
    result = CliRunner().invoke(app, [*args, "--scale", "big"])
    assert result.exit_code == 2 and "'auto' or 'oracle'" in result.output


def test_nested_pairs_and_false_calls_of_a_class_supervised_as_absent(tmp_path: Path) -> None:
    """A scripted model calls a hemophagocyte, a macrophage and two nucleated cells one inside
    the other; the truth (a lavage-like field) boxes the macrophage and one nucleated cell and
    supervises hemophagocytes as absent."""
    boxes = [(4, 100.0, 100.0, 120.0, 110.0), (3, 200.0, 200.0, 90.0, 80.0),
             (2, 60.0, 200.0, 64.0, 64.0), (2, 68.0, 208.0, 24.0, 24.0)]  # fmt: skip
    config = ModelConfig(name="scripted", version="0", architecture="tiny_blob",
                         classes=HOST_CLASSES, tile_size=512, overlap=128)  # fmt: skip
    model = LoadedModel(config, ScriptedNet(boxes), "0" * 64, Path("."))
    write_image(tmp_path / "s" / "t.png", np.full((256, 256, 3), 200, np.uint8))
    coco = {
        "images": [{"id": 1, "file_name": "s/t.png", "width": 256, "height": 256}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [155, 160, 90, 80]},
                        {"id": 2, "image_id": 1, "category_id": 2, "bbox": [28, 168, 64, 64]}],
        "categories": [{"id": 1, "name": "macrophage"}, {"id": 2, "name": "nucleated"}],
    }  # fmt: skip
    (tmp_path / "a.json").write_text(json.dumps(coco))
    spec = DatasetSpec("coco", tmp_path / "a.json", images=tmp_path,
                       supervised=["macrophage", "nucleated", "hemophagocyte"])  # fmt: skip
    s = evaluate(model, [annotated_suite(spec, model)])["sections"][spec.name]
    assert s["nested_nucleated_pairs"] == 1 and s["nested_nucleated_pairs_per_field"] == 1.0
    det = s["detection"]
    assert set(det) == {"macrophage", "nucleated", "hemophagocyte"}
    assert (det["nucleated"]["tp"], det["nucleated"]["fp"]) == (1, 1)
    assert det["macrophage"]["ap50"] == pytest.approx(1.0)
    h = det["hemophagocyte"]
    assert (h["tp"], h["fp"], h["precision"], h["recall"], h["ap50"]) == (0, 1, 0.0, None, None)
    assert s["objects"]["hemophagocyte"] == 0 and "hemophagocyte" not in s  # no true host


def test_recall_only_classes_report_recall_without_precision(tiny_model, tmp_path: Path) -> None:
    coco = write_disc_coco(tmp_path / "set", n_images=2, drop=1)  # 3 of 4 discs labelled
    spec = DatasetSpec("coco", coco, class_map={"wbc": "nucleated"}, supervised=[])
    suite = annotated_suite(spec, tiny_model)
    assert evaluate(tiny_model, [suite])["sections"][suite.name]["detection"] == {}
    suite = replace(suite, recall_only=frozenset({"nucleated"}))
    det = evaluate(tiny_model, [suite])["sections"][suite.name]["detection"]["nucleated"]
    assert (det["tp"], det["fn"], det["recall"]) == (6, 0, 1.0)
    assert det["precision"] is None and det["fp"] is None and det["positives_only"]
    assert "ap50" not in det


def test_composed_val_comes_with_each_kind_of_host_alone(
    tiny_model, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """composed-val mixes real and procedural hosts as the default recipe does; its two
    siblings draw the same fields with every host real, or every host procedural."""
    from hemoscan_training.config import ComposerSection
    from hemoscan_training.evaluate import suites

    recipes = []

    class Fields:
        def __init__(self, data_root, part, seed, n, crop, recipe) -> None:
            recipes.append((part, seed, n, recipe))

        def name(self, i: int) -> str:
            return f"field-{i}"

    monkeypatch.setattr(suites, "ComposedSet", Fields)
    (tmp_path / "txl-pbc").mkdir()
    names = ("composed-val", "composed-val-real-host", "composed-val-procedural-host")
    assert set(names) <= set(REPORT_SUITES)
    built = build_suites(["shared:" + ",".join(names)], tiny_model, data_root=tmp_path, limit=2)
    assert [s.name for s in built] == list(names)
    assert all(s.data == "composed" and len(s.fields) == 2 for s in built)
    assert [r[:3] for r in recipes] == [recipes[0][:3]] * 3  # the same fields
    assert [r[3].p_real_host for r in recipes] == [ComposerSection().p_real_host, 1.0, 0.0]


def test_segpc_plasma_cells_are_mask_components_without_clusters() -> None:
    mask = np.zeros((300, 300), np.uint8)
    cv2.circle(mask, (40, 40), 20, 255, -1)  # a plasma cell
    cv2.circle(mask, (120, 40), 4, 255, -1)  # a speck under 100 px
    cv2.circle(mask, (40, 150), 20, 255, -1)  # two touching cells: an elongated cluster
    cv2.circle(mask, (78, 150), 20, 255, -1)
    cv2.rectangle(mask, (150, 150), (290, 290), 255, -1)  # larger than 4 red cells of 32 px
    mask[200, 20] = 100  # below the mask's threshold
    assert segpc_plasma_cells(mask).tolist() == [[20.0, 20.0, 61.0, 61.0]]
    assert segpc_plasma_cells(np.zeros((8, 8), np.uint8)).shape == (0, 4)


SHARED = DEFAULT_DATA_ROOT
needs_shared = pytest.mark.skipif(
    not (SHARED / "txl-pbc").is_dir() or not (SHARED / "bal-macrophages").is_dir()
    or not (SHARED / "segpc-marrow").is_dir(),
    reason=f"the public sets are not at {SHARED}",
)  # fmt: skip


@needs_shared
def test_native_resolution_suites(tiny_model) -> None:
    from hemoscan_training.splits import HELDOUT_BAL_SLIDES

    names = ("txl-val", "txl-val-native", "bal-heldout", "segpc-heldout-native", "segpc-heldout",
             "txl-val-scanner")  # fmt: skip
    assert set(names) <= set(REPORT_SUITES)
    txl, native, bal, segpc, segpc_fixed, scanner = build_suites(
        ["shared:" + ",".join(names)], tiny_model, data_root=SHARED, limit=3
    )
    # the same TXL fields: scale auto, the oracle scale of txl-val kept as the reference
    assert [f.name for f in native.fields] == [f.name for f in txl.fields]
    assert all(f.scale == "auto" for f in (*native.fields, *bal.fields, *segpc.fields))
    assert [f.oracle_scale for f in native.fields] == [f.scale for f in txl.fields]
    # ... and resampled to a 40x scanner's 32 px red cells, boxes with them
    assert [f.name for f in scanner.fields] == [f.name for f in txl.fields]
    assert all(f.scale == "auto" for f in scanner.fields)
    assert all(f.oracle_scale == pytest.approx(40 / 32) for f in scanner.fields)
    (image, record), (native_image, native_record) = scanner.fields[0].load(), native.fields[0].load()
    factor = txl.fields[0].scale * 32 / 40
    assert image.shape[0] == round(native_image.shape[0] * factor)
    np.testing.assert_allclose(record.boxes, native_record.boxes * factor, rtol=1e-5)
    # every held-out lavage patch (7, of 2 slides); a 7.5 µm red cell at 0.23 µm/px -> 40 px
    bal = build_suites(["shared:bal-heldout"], tiny_model, data_root=SHARED)[0]
    assert len(bal.fields) == 7 and {f.sample for f in bal.fields} == set(HELDOUT_BAL_SLIDES)
    assert bal.fields[0].oracle_scale == pytest.approx(40 / (7.5 / 0.23))
    records = [f.load()[1] for f in bal.fields]
    labels = [lab for r in records for lab in r.labels]
    assert labels.count("macrophage") == 35 and set(labels) == {"macrophage", "nucleated"}
    assert records[0].supervised == {"nucleated", "macrophage", "hemophagocyte"}
    # segpc: the same held-out fields; plasma cells from the mask, positives only
    assert [f.name for f in segpc.fields] == [f.name for f in segpc_fixed.fields]
    assert segpc.recall_only == {"nucleated"} and segpc.has_truth
    image, record = segpc.fields[0].load()
    assert len(record) > 0 and set(record.labels) == {"nucleated"} and not record.supervised
    assert image.shape[:2] == (record.height, record.width)
