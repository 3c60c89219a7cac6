"""The Dask engine against a local Dask cluster: same outputs as a local scan, resume, CLI."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("distributed")

from distributed import Client, LocalCluster
from typer.testing import CliRunner

from hemoscan.cli.app import EXIT_TILES_FAILED, EXIT_USAGE, app
from hemoscan.engines import dask_engine
from hemoscan.errors import EngineError
from hemoscan.inference.spec import resolve_predictor
from hemoscan.io.sources import TileSource, expand_sources
from hemoscan.models.loading import manifest_entry, sha256_file
from hemoscan.pipeline import ScanOptions, scan
from tests.conftest import disc_image, write_image

UNREACHABLE = "tcp://127.0.0.1:9"  # the discard port: nothing listens there


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """Two worker processes with one thread each, shut down after this module."""
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    ) as cluster:
        yield cluster


@pytest.fixture
def client(cluster: LocalCluster) -> Iterator[Client]:
    with Client(cluster) as client:
        yield client


@pytest.fixture
def tiles(tile_folder: Path) -> Path:
    """``tile_folder`` (2 samples x 3 tiles) plus a corrupt tile and a large, tiled image."""
    (tile_folder / "patient_B" / "tile_1b.png").write_bytes(b"not an image at all")
    write_image(tile_folder / "patient_B" / "tile_9.png", disc_image(600, 420, 14, seed=7)[0])
    return tile_folder


def _many_tiles(folder: Path, n: int) -> Path:
    for i in range(n):
        write_image(folder / f"t{i:03d}.png", disc_image(128, 96, 2, seed=i)[0])
    return folder


def _outputs(out: Path) -> tuple[bytes, list[dict[str, str]], dict]:
    """``detections.jsonl`` bytes, ``tiles.csv`` rows without the timing column ``ms``, and
    ``summary.json`` without its timestamps."""
    with open(out / "tiles.csv", newline="") as f:
        rows = [{k: v for k, v in row.items() if k != "ms"} for row in csv.DictReader(f)]
    summary = json.loads((out / "summary.json").read_text())
    for sample in summary["samples"]:
        del sample["provenance"]["started_at"], sample["provenance"]["finished_at"]
    return (out / "detections.jsonl").read_bytes(), rows, summary


def _dask(model_dir: Path | str, cluster: LocalCluster, **kw) -> ScanOptions:
    return ScanOptions(
        model=str(model_dir), engine="dask", scheduler=cluster.scheduler_address, scale=1.0, **kw
    )


def _worker_predictors() -> list[int]:
    """Run on a worker: the ids of the predictors it holds."""
    return [id(p) for p in dask_engine._predictors.values()]


@pytest.mark.parametrize("batch_size", [1, 2])
def test_dask_and_local_runs_write_identical_outputs(
    cluster: LocalCluster, client: Client, tiny_model_dir: Path, tiles: Path, tmp_path: Path,
    batch_size: int,
) -> None:  # fmt: skip
    local, dask = tmp_path / "local", tmp_path / "dask"
    scan([str(tiles)], local, ScanOptions(scale=1.0, model=str(tiny_model_dir), batch_size=batch_size))
    summary = scan([str(tiles)], dask, _dask(tiny_model_dir, cluster, batch_size=batch_size))
    dets, rows, doc = _outputs(dask)
    assert (dets, rows, doc) == _outputs(local)
    # image-quality measurements made on the workers come back with each tile
    assert (dask / "qc.jsonl").read_bytes() == (local / "qc.jsonl").read_bytes()
    assert sum(s["qc"]["tiles_assessed"] for s in doc["samples"]) == 7
    assert (
        json.loads((dask / "run.json").read_text())["settings"]
        == json.loads((local / "run.json").read_text())["settings"]
    )
    assert len(rows) == 8 and summary.tiles_failed == 1
    (bad,) = [r for r in rows if r["status"] == "error"]
    assert bad["tile"].endswith("tile_1b.png") and "cannot decode" in bad["error"]
    assert sum(int(r["nucleated"]) for r in rows) == 6 * 4 + 14
    assert [r["tile"] for r in rows] == [t.path for t in expand_sources([str(tiles)])]
    # a worker process loads the model once and keeps it: a second scan reuses it
    before = client.run(_worker_predictors)
    assert any(before.values())
    scan([str(tiles)], tmp_path / "again", _dask(tiny_model_dir, cluster, batch_size=batch_size))
    after = client.run(_worker_predictors)
    assert all(set(before[w]) <= set(after[w]) for w in before)


def test_a_scan_started_locally_resumes_on_dask(
    cluster: LocalCluster, tiny_model_dir: Path, tiles: Path, tmp_path: Path
) -> None:
    clean, resumed = tmp_path / "clean", tmp_path / "resumed"
    scan([str(tiles)], clean, ScanOptions(scale=1.0, model=str(tiny_model_dir)))
    scan([str(tiles / "patient_A")], resumed, ScanOptions(scale=1.0, model=str(tiny_model_dir)))
    summary = scan([str(tiles)], resumed, _dask(tiny_model_dir, cluster))
    assert (summary.tiles_skipped, summary.tiles_scanned_now) == (3, 5)
    assert _outputs(resumed) == _outputs(clean)


def test_a_killed_dask_client_resumes_without_loss_or_duplicates(
    cluster: LocalCluster, tiny_model_dir: Path, tmp_path: Path
) -> None:
    tiles = _many_tiles(tmp_path / "many", 120)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    cmd = [sys.executable, "-m", "hemoscan.cli.app", "scan", str(tiles), "--scale", "1", "--model",
           str(tiny_model_dir), "--engine", "dask", "--scheduler", cluster.scheduler_address,
           "-q", "--out", str(killed)]  # fmt: skip
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            csv_file = killed / "tiles.csv"
            if csv_file.exists() and len(csv_file.read_text().splitlines()) > 10:
                break
            time.sleep(0.01)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    done_before = len((killed / "tiles.csv").read_text().splitlines()) - 1
    assert 0 < done_before < 120, "the client was not killed mid-way"
    again = scan([str(tiles)], killed, _dask(tiny_model_dir, cluster))
    assert again.tiles_skipped >= done_before and again.tiles_total == 120
    scan([str(tiles)], clean, ScanOptions(scale=1.0, model=str(tiny_model_dir)))
    assert _outputs(killed) == _outputs(clean)


def test_a_worker_lost_mid_run_loses_nothing(
    cluster: LocalCluster, client: Client, tiny_model_dir: Path, tmp_path: Path
) -> None:
    tiles = _many_tiles(tmp_path / "many", 40)
    pids = client.run(os.getpid)
    victim = min(pids)
    written: list[str] = []

    def kill_a_worker_after_two_tiles(result) -> None:
        written.append(result.tile)
        if len(written) == 2:
            os.kill(pids[victim], signal.SIGKILL)  # a worker of this test's cluster

    out, clean = tmp_path / "out", tmp_path / "clean"
    scan([str(tiles)], out, _dask(tiny_model_dir, cluster), progress=kill_a_worker_after_two_tiles)
    scan([str(tiles)], clean, ScanOptions(scale=1.0, model=str(tiny_model_dir)))
    assert _outputs(out) == _outputs(clean)
    assert len(written) == 40 and len(set(written)) == 40
    client.wait_for_workers(2, timeout=120)  # the nanny restarts the killed worker
    assert pids[victim] not in client.run(os.getpid).values()


def test_shipped_model_names_resolve_on_the_client(
    cluster: LocalCluster, tiny_model_dir: Path, tiles: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """``HEMOSCAN_WEIGHTS_DIR`` is set on the client only: workers get the resolved folder."""
    weights = tmp_path / "weights"
    shutil.copytree(tiny_model_dir, weights / "tiny-folder")
    manifest = {"tiny-shipped": manifest_entry(weights / "tiny-folder")}
    (weights / "manifest.json").write_text(json.dumps(manifest))
    monkeypatch.setenv("HEMOSCAN_WEIGHTS_DIR", str(weights))
    local, dask = tmp_path / "local", tmp_path / "dask"
    scan([str(tiles)], local, ScanOptions(scale=1.0, model="tiny-shipped"))
    scan([str(tiles)], dask, _dask("tiny-shipped", cluster))
    assert _outputs(dask) == _outputs(local)


def test_overlays_are_drawn_on_the_client_identically(
    cluster: LocalCluster, tiny_model_dir: Path, tiles: Path, tmp_path: Path
) -> None:
    local, dask = tmp_path / "local", tmp_path / "dask"
    evidence = {"save_overlays": True, "save_crops": True}
    scan([str(tiles)], local, ScanOptions(scale=1.0, model=str(tiny_model_dir), **evidence))
    scan([str(tiles)], dask, _dask(tiny_model_dir, cluster, **evidence))
    overlays = sorted(p.name for p in (dask / "overlays").iterdir())
    assert len(overlays) == 7  # every tile read, not the corrupt one
    assert overlays == sorted(p.name for p in (local / "overlays").iterdir())
    for name in overlays:
        assert (dask / "overlays" / name).read_bytes() == (local / "overlays" / name).read_bytes()
    assert not (dask / "crops").exists() and not (local / "crops").exists()  # no macrophages


def test_workers_that_cannot_see_a_tile_are_refused_before_scanning(
    client: Client, tmp_path: Path
) -> None:
    with pytest.raises(EngineError, match="cannot see '/no/such/tile.png'.*shared file system"):
        dask_engine.check_workers(client, [str(tmp_path), "/no/such/tile.png"])


def test_a_worker_with_other_weights_refuses_to_scan(tiny_model_dir: Path, tmp_path: Path) -> None:
    spec, _ = resolve_predictor(str(tiny_model_dir), device="cpu")
    spec = replace(spec, model_sha256="0" * 64)
    with pytest.raises(EngineError, match="not the 0000000000000000... of the spec"):
        dask_engine.scan_chunk(spec, [TileSource(str(tmp_path / "x.png"), "s")])


def test_a_model_without_a_folder_is_refused_before_contacting_the_cluster(
    hemophagocyte_model, tiles: Path, tmp_path: Path
) -> None:
    options = ScanOptions(scale=1.0, engine="dask", scheduler=UNREACHABLE)
    with pytest.raises(EngineError, match="'scripted' has no model folder"):
        scan([str(tiles)], tmp_path / "out", options, model=hemophagocyte_model)


def test_an_unreachable_scheduler_is_a_clear_error(
    tiny_model_dir: Path, tiles: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dask_engine, "CONNECT_TIMEOUT_S", 1.0)
    options = ScanOptions(scale=1.0, model=str(tiny_model_dir), engine="dask", scheduler=UNREACHABLE)
    with pytest.raises(EngineError, match="no Dask scheduler reachable at 'tcp://127.0.0.1:9'"):
        scan([str(tiles)], tmp_path / "out", options)
    result = CliRunner().invoke(app, ["scan", str(tiles), "-o", str(tmp_path / "cli"), "--model",
                                      str(tiny_model_dir), "--engine", "dask", "--scheduler",
                                      UNREACHABLE])  # fmt: skip
    assert result.exit_code == EXIT_USAGE and "no Dask scheduler reachable" in result.output


def test_nothing_left_to_scan_contacts_no_cluster(
    tiny_model_dir: Path, tiles: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    scan([str(tiles)], out, ScanOptions(scale=1.0, model=str(tiny_model_dir)))
    before = _outputs(out)
    options = ScanOptions(scale=1.0, model=str(tiny_model_dir), engine="dask", scheduler=UNREACHABLE)
    assert scan([str(tiles)], out, options).tiles_scanned_now == 0
    assert _outputs(out) == before


def test_a_scheduler_address_needs_the_dask_engine(
    tiny_model_dir: Path, tiles: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(app, ["scan", str(tiles), "-o", str(tmp_path / "out"), "--model",
                                      str(tiny_model_dir), "--scheduler", UNREACHABLE])  # fmt: skip
    assert result.exit_code == EXIT_USAGE and "--engine dask" in result.output


def test_cli_engine_dask_starts_a_local_cluster(
    tiny_model_dir: Path, tiles: Path, tmp_path: Path
) -> None:
    local, dask = tmp_path / "local", tmp_path / "dask"
    base = ["scan", str(tiles), "--scale", "1", "--model", str(tiny_model_dir), "-q"]
    assert CliRunner().invoke(app, [*base, "-o", str(local)]).exit_code == EXIT_TILES_FAILED
    result = CliRunner().invoke(app, [*base, "-o", str(dask), "--engine", "dask", "--workers", "1"])
    assert result.exit_code == EXIT_TILES_FAILED, result.output
    assert "8 tiles scanned (0 already done, 1 failed)" in result.output
    assert _outputs(dask) == _outputs(local)


def test_the_cli_and_the_pipeline_import_dask_lazily() -> None:
    code = (
        "import sys; import hemoscan.cli.app, hemoscan.pipeline, hemoscan.engines; "
        "bad = [m for m in ('dask', 'distributed') if m in sys.modules]; assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
