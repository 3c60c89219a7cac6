"""``hemoscan train`` / ``hemoscan evaluate``: added to the library CLI by the training package."""

from __future__ import annotations

import importlib.util
from importlib.metadata import entry_points

import pytest
from typer.testing import CliRunner

from hemoscan.cli.app import COMMAND_GROUP, app


def test_the_training_package_registers_its_commands_through_the_entry_point_group() -> None:
    registered = {e.name: e.value for e in entry_points(group=COMMAND_GROUP)}
    assert registered == {
        "train": "hemoscan_training.cli:train_command",
        "evaluate": "hemoscan_training.cli:evaluate_command",
    }
    names = {c.name for c in app.registered_commands}
    assert {"train", "evaluate", "scan"} <= names


def test_train_needs_a_config() -> None:
    result = CliRunner().invoke(app, ["train", "--out", "somewhere"])
    assert result.exit_code == 2 and "--config" in result.output


def test_train_help_and_a_missing_training_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    help_ = CliRunner().invoke(app, ["train", "--help"])
    assert help_.exit_code == 0 and all(
        o in help_.output for o in ("--config", "--set", "--resume", "--fraction")
    )
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "albumentations" else real(name, *a),
    )
    result = CliRunner().invoke(app, ["train", "--config", "x.yaml", "--out", "y"])
    assert (
        result.exit_code == 2
        and "albumentations" in result.output
        and "pip install" in result.output
    )
