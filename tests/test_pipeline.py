"""End-to-end scans with the tiny model: outputs, their schema, bad inputs and resuming."""

from __future__ import annotations

import csv
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hemoscan.datamodel import CELL_CLASSES, detection_id
from hemoscan.errors import OutputDirError, SourceError, UnknownModelError
from hemoscan.inference import backends
from hemoscan.io.files import short_hash
from hemoscan.io.scan_files import TILE_COLUMNS
from hemoscan.pipeline import ScanOptions, scan
from tests.conftest import disc_image, write_image


def _rows(out: Path) -> list[dict[str, str]]:
    with open(out / "tiles.csv", newline="") as f:
        return list(csv.DictReader(f))


def _detections(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]


def _options(model_dir: Path, **kw) -> ScanOptions:
    """Mechanics tests scan at scale 1 (the tiny model cannot measure cells); see the auto
    scale tests for ``scale="auto"``."""
    return ScanOptions(**{"scale": 1.0, "model": str(model_dir), **kw})


def test_outputs_follow_the_documented_schema(
    tiny_model_dir: Path, tile_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    summary = scan([str(tile_folder)], out, _options(tiny_model_dir))
    rows = _rows(out)
    assert tuple(rows[0]) == TILE_COLUMNS
    assert len(rows) == 6 and {r["status"] for r in rows} == {"ok"}
    assert all(r["nucleated"] == "4" and r["width"] == "200" and r["height"] == "160" for r in rows)
    dets = _detections(out)
    assert len(dets) == 24
    ordinal: dict[str, int] = {}
    for d in dets:
        assert set(d) == {"id", "sample", "tile", "x1", "y1", "x2", "y2", "label", "score"}
        n = ordinal[d["tile"]] = ordinal.get(d["tile"], -1) + 1  # its place among its tile's lines
        assert d["id"] == detection_id(d["sample"], d["tile"], n)
        assert d["tile"].startswith(str(tile_folder)) and d["sample"] in ("patient_A", "patient_B")
        assert 0 <= d["x1"] < d["x2"] <= 200 and 0 <= d["y1"] < d["y2"] <= 160
        assert d["label"] in CELL_CLASSES and 0 < d["score"] <= 1
    doc = json.loads((out / "summary.json").read_text())
    assert doc["format"] == "hemoscan-summary/1"
    by_sample = {s["sample"]: s for s in doc["samples"]}
    assert set(by_sample) == {"patient_A", "patient_B"}
    a = by_sample["patient_A"]
    assert a["counts"] == {
        "rbc": 0,
        "platelet": 0,
        "nucleated": 12,
        "macrophage": 0,
        "hemophagocyte": 0,
    }
    assert a["nucleated_cells_assessed"] == 12 and a["hemophagocytes_per_1000_nucleated"] == 0.0
    assert (a["tiles_scanned"], a["tiles_failed"]) == (3, 0)
    prov = a["provenance"]
    assert prov["model_name"] == "tiny-test" and len(prov["model_sha256"]) == 64
    assert prov["thresholds"]["nucleated"] == 0.5 and prov["settings"]["tile_size"] == 256
    assert prov["started_at"] <= prov["finished_at"]
    assert summary.tiles_failed == 0 and len(summary.samples) == 2


BAD_FILES = {
    "empty.png": (b"", "file is empty"),
    "text.jpg": (b"hello, not an image\n" * 5, "cannot decode"),
    "notes.bmp": (b"BM", "unsupported extension"),
}


def test_bad_tiles_are_recorded_and_the_run_goes_on(
    tiny_model_dir: Path, tile_folder: Path, tmp_path: Path
) -> None:
    bad = tile_folder / "patient_A"
    for name, (data, _) in BAD_FILES.items():
        (bad / name).write_bytes(data)
    good = (bad / "tile_0.png").read_bytes()
    (bad / "truncated.png").write_bytes(good[: len(good) // 2])
    sources = [str(tile_folder), str(bad / "notes.bmp")]  # a named unsupported file is recorded too
    out = tmp_path / "out"
    summary = scan(sources, out, _options(tiny_model_dir))
    rows = {Path(r["tile"]).relative_to(tile_folder).as_posix(): r for r in _rows(out)}
    assert len(rows) == 10
    for name, (_, reason) in BAD_FILES.items():
        row = rows[f"patient_A/{name}"]
        assert row["status"] == "error" and reason in row["error"] and name in row["error"], row
    assert rows["patient_A/truncated.png"]["status"] == "error"
    assert summary.tiles_failed == 4
    assert sum(r["status"] == "ok" for r in rows.values()) == 6
    assert len(_detections(out)) == 24


@pytest.mark.parametrize("backend", ["torch", "onnx"])
def test_concurrent_streams_change_nothing_but_timing(
    tiny_model_dir: Path, tile_folder: Path, tmp_path: Path, backend: str
) -> None:
    if backend == "onnx":
        pytest.importorskip("onnxruntime")
        from hemoscan.model_export.onnx import export_onnx
        from hemoscan.models.loading import load_model

        model_dir = export_onnx(load_model(str(tiny_model_dir)), tmp_path / "onnx")
    else:
        model_dir = tiny_model_dir
    for i in range(6):  # more tiles than streams x batch, and a bad one among them
        image, _ = disc_image(200, 160, 3, seed=100 + i)
        write_image(tile_folder / "patient_C" / f"tile_{i}.png", image)
    (tile_folder / "patient_C" / "tile_2.png").write_bytes(b"not a png")
    outputs = []
    for streams, batch_size in ((1, 1), (3, 1), (2, 2)):
        out = tmp_path / f"out-{streams}-{batch_size}"
        scan([str(tile_folder)], out,
             _options(model_dir, backend=backend, streams=streams, batch_size=batch_size))  # fmt: skip
        rows = [{k: v for k, v in r.items() if k != "ms"} for r in _rows(out)]
        summary = json.loads((out / "summary.json").read_text())
        for s in summary["samples"]:
            del s["provenance"]
        outputs.append(((out / "detections.jsonl").read_bytes(), rows, summary))
    assert outputs[0][1][6 + 2]["status"] == "error" and len(outputs[0][1]) == 12
    assert outputs[1] == outputs[0] and outputs[2] == outputs[0]


def test_rerun_skips_finished_tiles_and_never_duplicates(
    tiny_model_dir: Path, tile_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    scan([str(tile_folder / "patient_A")], out, _options(tiny_model_dir))
    again = scan([str(tile_folder)], out, _options(tiny_model_dir))
    assert (again.tiles_skipped, again.tiles_scanned_now) == (3, 3)
    assert len(_rows(out)) == 6 and len(_detections(out)) == 24
    assert len({(d["tile"], d["x1"], d["y1"]) for d in _detections(out)}) == 24
    straight = tmp_path / "straight"
    scan([str(tile_folder)], straight, _options(tiny_model_dir))
    ids = {d["id"]: d for d in _detections(straight)}
    assert len(ids) == 24 and ids == {d["id"]: d for d in _detections(out)}  # resuming keeps ids


def test_torn_writes_are_repaired_on_resume(
    tiny_model_dir: Path, tile_folder: Path, tmp_path: Path
) -> None:
    clean, torn = tmp_path / "clean", tmp_path / "torn"
    scan([str(tile_folder)], clean, _options(tiny_model_dir))
    scan([str(tile_folder / "patient_A")], torn, _options(tiny_model_dir))
    # a run killed mid-tile: detections of an unfinished tile, then half a line
    unfinished = str(tile_folder / "patient_B" / "tile_0.png")
    with open(torn / "detections.jsonl", "a") as f:
        f.write(json.dumps({"sample": "patient_B", "tile": unfinished, "label": "rbc", "score": 0.9,
                            "x1": 1, "y1": 1, "x2": 5, "y2": 5}) + "\n")  # fmt: skip
        f.write('{"sample": "patient_B", "tile": "x", "lab')
    with open(torn / "tiles.csv", "a") as f:
        f.write("patient_B,/some/half/written/row")
    scan([str(tile_folder)], torn, _options(tiny_model_dir))
    key = lambda d: (d["tile"], d["label"], d["x1"], d["y1"])  # noqa: E731
    assert sorted(map(key, _detections(torn))) == sorted(map(key, _detections(clean)))
    assert sorted(r["tile"] for r in _rows(torn)) == sorted(r["tile"] for r in _rows(clean))


def test_resume_with_other_settings_is_refused(
    tiny_model_dir: Path, tile_folder: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    scan([str(tile_folder)], out, _options(tiny_model_dir))
    with pytest.raises(OutputDirError, match="thresholds"):
        scan([str(tile_folder)], out, _options(tiny_model_dir, conf=0.7))


@pytest.mark.parametrize(
    ("sources", "model", "error", "message"),
    [
        (["nowhere"], None, SourceError, "nowhere: no such file or folder"),
        (["list.txt"], None, SourceError, "list.txt, line 2: missing.png: no such file or folder"),
        (["*.tif"], None, SourceError, "pattern matches no"),
        ([], "no-such-model", UnknownModelError, "no shipped model or model folder named"),
    ],
)
def test_sources_and_model_names_are_checked_before_the_model_loads(
    tiny_model_dir: Path, tile_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    sources: list[str], model: str | None, error: type[Exception], message: str,
) -> None:  # fmt: skip
    def load(*args: object, **kw: object) -> None:
        raise AssertionError("a model was loaded before the sources and model name were checked")

    monkeypatch.setattr(backends, "load_model", load)
    monkeypatch.setattr(backends, "load_onnx_model", load)
    monkeypatch.chdir(tile_folder)
    (tile_folder / "list.txt").write_text("patient_A/tile_0.png\nmissing.png\n")
    options = _options(tiny_model_dir) if model is None else _options(tiny_model_dir, model=model)
    sources = sources or [str(tile_folder)]
    with pytest.raises(error, match=re.escape(message)):
        scan(sources, tmp_path / "out", options, on_start=load)  # type: ignore[arg-type]
    assert not (tmp_path / "out").exists()


def test_retry_failed_rescans_only_failed_tiles(
    tiny_model_dir: Path, tile_folder: Path, tmp_path: Path
) -> None:
    broken = tile_folder / "patient_A" / "late.png"
    broken.write_bytes(b"")
    out = tmp_path / "out"
    assert scan([str(tile_folder)], out, _options(tiny_model_dir)).tiles_failed == 1
    write_image(broken, disc_image(200, 160, 2)[0])
    again = scan([str(tile_folder)], out, _options(tiny_model_dir, retry_failed=True))
    assert (again.tiles_scanned_now, again.tiles_failed) == (1, 0)
    assert len(_rows(out)) == 7 and len(_detections(out)) == 26


def test_hard_kill_loses_nothing_and_duplicates_nothing(
    tiny_model_dir: Path, tmp_path: Path
) -> None:
    tiles = tmp_path / "many"
    for i in range(300):
        write_image(tiles / f"t{i:03d}.png", disc_image(160, 128, 2, seed=i)[0])
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    cmd = [
        sys.executable,
        "-m",
        "hemoscan.cli.app",
        "scan",
        str(tiles),
        "--model",
        str(tiny_model_dir),
        "-q",
    ]
    proc = subprocess.Popen(
        [*cmd, "--out", str(killed)], env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if (killed / "tiles.csv").exists() and len(
            (killed / "tiles.csv").read_text().splitlines()
        ) > 20:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done_before = len(_rows(killed))
    assert 0 < done_before < 300, "the run was not killed mid-way"
    subprocess.run([*cmd, "--out", str(killed)], check=True)
    scan([str(tiles)], clean, _options(tiny_model_dir))
    key = lambda d: (d["tile"], d["label"], d["x1"], d["y1"], d["x2"], d["y2"])  # noqa: E731
    assert sorted(map(key, _detections(killed))) == sorted(map(key, _detections(clean)))
    assert sorted(r["tile"] for r in _rows(killed)) == sorted(r["tile"] for r in _rows(clean))


def test_hemophagocytes_carry_their_engulfed_cells_and_evidence(
    hemophagocyte_model, tmp_path: Path
) -> None:
    tile = write_image(tmp_path / "s1" / "field.png", disc_image(320, 288, 0)[0])
    out = tmp_path / "out"
    summary = scan(
        [str(tile)],
        out,
        ScanOptions(scale=1.0, save_crops=True, save_overlays=True),
        model=hemophagocyte_model,
    )
    by_label = {d["label"]: d for d in _detections(out)}
    assert set(by_label) == {"hemophagocyte", "macrophage", "rbc"}
    hemo = by_label["hemophagocyte"]
    assert hemo["engulfed"] == {"rbc": 2, "nucleated": 1, "platelet": 0}
    assert sorted(c["label"] for c in hemo["engulfed_cells"]) == ["nucleated", "rbc", "rbc"]
    assert (hemo["x1"], hemo["y1"], hemo["x2"], hemo["y2"]) == (40.0, 45.0, 160.0, 155.0)
    assert "engulfed" not in by_label["macrophage"]
    (findings,) = summary.samples
    assert findings.counts["hemophagocyte"] == 1 and findings.nucleated_cells_assessed == 2
    assert findings.hemophagocytes_per_1000_nucleated == 500.0
    assert (
        findings.engulfed_cells_total["rbc"] == 2
        and findings.hemophagocytes_by_engulfed["nucleated"] == 1
    )
    crops = sorted(p.relative_to(out).as_posix() for p in (out / "crops").rglob("*.jpg"))
    # an absolute path does not survive as a file name unchanged: a short hash keeps it unique
    stem = f'{tile.as_posix().lstrip("/").replace("/", "__")}-{short_hash(str(tile))}'
    order = [d["label"] for d in _detections(out)]
    expected = [
        f"crops/s1/{lbl}/{stem}__{order.index(lbl):04d}.jpg"
        for lbl in ("hemophagocyte", "macrophage")
    ]
    assert crops == expected
    assert (out / "overlays").is_dir()


def test_tiles_too_poor_in_cells_settle_on_their_samples_consensus(
    tiny_model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hemoscan.datamodel import ScaleEstimate
    from hemoscan.inference.predictor import Prediction, Predictor

    def scripted_auto(self, images):  # type: ignore[no-untyped-def]
        """Stands in for the estimate: 0.1 per disc found at scale 1, none without discs."""
        out = []
        for found in self._detect(images, [1.0] * len(images)):
            dets = found.detections
            scale = ScaleEstimate(1.0, "auto-rbc", 0.1 * len(dets)) if dets else ScaleEstimate(1.0, "default")
            out.append(Prediction(dets, [], scale))
        return out

    predicted_at: list[float] = []
    detect = Predictor._detect

    def recording_detect(self, images, scales):  # type: ignore[no-untyped-def]
        predicted_at.extend(scales)
        return detect(self, images, scales)

    monkeypatch.setattr(Predictor, "_predict_auto", scripted_auto)
    monkeypatch.setattr(Predictor, "_detect", recording_detect)
    tiles = tmp_path / "tiles"
    write_image(tiles / "s1" / "a.png", disc_image(200, 160, 4, seed=1)[0])
    write_image(tiles / "s1" / "b.png", disc_image(200, 160, 6, seed=2, radius=10)[0])
    write_image(tiles / "s1" / "blank.png", disc_image(200, 160, 0)[0])
    write_image(tiles / "s2" / "blank.png", disc_image(200, 160, 0)[0])
    out = tmp_path / "out"
    scan([str(tiles)], out, _options(tiny_model_dir, scale="auto"))
    rows = {r["tile"].removeprefix(str(tiles) + "/"): r for r in _rows(out)}
    consensus = (0.4 * 0.6) ** 0.5
    assert rows["s1/a.png"]["scale_source"] == "auto-rbc" and rows["s1/a.png"]["scale"] == "1.0"
    assert float(rows["s1/b.png"]["scale_estimate"]) == pytest.approx(0.6)
    assert rows["s1/blank.png"]["scale_source"] == "sample"
    assert float(rows["s1/blank.png"]["scale"]) == pytest.approx(consensus, abs=1e-4)
    assert rows["s1/blank.png"]["scale_estimate"] == ""
    assert (rows["s2/blank.png"]["scale_source"], rows["s2/blank.png"]["scale"]) == ("default", "1.0")
    assert any(s == pytest.approx(consensus, abs=1e-4) for s in predicted_at)  # at the consensus
    samples = {s["sample"]: s for s in json.loads((out / "summary.json").read_text())["samples"]}
    assert samples["s1"]["scale"]["consensus"] == pytest.approx(consensus, abs=1e-4)
    assert samples["s1"]["scale"]["tiles_by_source"] == {"auto-rbc": 2, "sample": 1}
    assert samples["s2"]["scale"] == {"consensus": None, "estimates": None,
                                      "tiles_by_source": {"default": 1}}  # fmt: skip
    # resuming the finished folder scans nothing again
    again = scan([str(tiles)], out, _options(tiny_model_dir, scale="auto"))
    assert again.tiles_scanned_now == 0 and len(_rows(out)) == 4
def test_scan_records_image_quality_and_near_misses(tmp_path: Path) -> None:
    """Every ok tile gets a qc.jsonl line, summary.json a qc record per sample; hemophagocyte
    calls below the threshold go to near_misses.jsonl, never to detections.jsonl."""
    from tests.conftest import HEMOPHAGOCYTE_SCENE, scripted_model

    model = scripted_model([*HEMOPHAGOCYTE_SCENE, (4, 400.0, 300.0, 100.0, 100.0, -1.2)])
    for i in range(2):
        write_image(tmp_path / "s1" / f"f{i}.png", disc_image(512, 512, 6, seed=i)[0])
    write_image(tmp_path / "s1" / "broken.png", disc_image(64, 64, 0)[0]).write_bytes(b"not a png")
    out = tmp_path / "out"
    summary = scan([str(tmp_path / "s1")], out, ScanOptions(scale=1.0), model=model)
    assert all(d["score"] >= 0.3 for d in _detections(out))
    qc_lines = [json.loads(line) for line in (out / "qc.jsonl").read_text().splitlines()]
    assert sorted(Path(r["tile"]).name for r in qc_lines) == ["f0.png", "f1.png"]
    assert set(qc_lines[0]["metrics"]) >= {"sharpness", "stain_density", "rbc_hue"}
    near = [json.loads(line) for line in (out / "near_misses.jsonl").read_text().splitlines()]
    assert len(near) == 2 and {round(r["score"], 3) for r in near} == {0.231}
    (findings,) = summary.samples
    assert findings.qc is not None and findings.qc.tiles_assessed == 2
    assert findings.qc.codes == ("too_few_cells", "failed_tiles")
    saved = json.loads((out / "summary.json").read_text())["samples"][0]
    assert saved["qc"]["flags"][0]["code"] == "too_few_cells" and saved["qc"]["thresholds"]["min_nucleated"] == 500
