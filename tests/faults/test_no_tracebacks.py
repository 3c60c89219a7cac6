"""No bad input makes a command print a Python traceback: each is an ``error:`` line, exit 2."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hemoscan.cli.app import EXIT_USAGE, app
from tests.conftest import unprivileged

runner = CliRunner()


def _model_with_config(tmp: Path, model: Path, text: str) -> Path:
    folder = tmp / "model"
    shutil.copytree(model, folder)
    (folder / "config.json").write_text(text)
    return folder


def _scan_folder_with(tmp: Path, name: str, text: str) -> Path:
    out = tmp / "scan-out"
    out.mkdir(exist_ok=True)
    (out / name).write_text(text)
    return out


#: (what, arguments given the tiny model, the tiles and a temporary folder, expected fragment)
BAD: list[tuple[str, Callable[[Path, Path, Path], list], str]] = [
    ("config.json a list", lambda m, t, d: ["scan", t, "-o", d / "o", "--model",
                                            _model_with_config(d, m, "[]")], "invalid model config"),
    ("config.json not JSON", lambda m, t, d: ["scan", t, "-o", d / "o", "--model",
                                              _model_with_config(d, m, "{")], "invalid model config"),
    ("config.json missing", lambda m, t, d: ["scan", t, "-o", d / "o", "--model", d],
     "model config not found"),
    ("run.json corrupt", lambda m, t, d: ["scan", t, "--model", m, "-o",
                                          _scan_folder_with(d, "run.json", "{oops")], "corrupt"),
    ("run.json without settings", lambda m, t, d: ["scan", t, "--model", m, "-o",
                                                   _scan_folder_with(d, "run.json", "[1]")],
     "corrupt"),
    ("report of no scan", lambda m, t, d: ["report", d, "-o", d / "r.html"],
     "not a finished hemoscan scan folder"),
    ("scores of a folder without lab files", lambda m, t, d: ["scores", d],
     "holds no lab-panel file"),
    ("scores of an unreadable file", lambda m, t, d: ["scores", _unreadable(d)],
     "cannot read lab-panel file"),
    ("scores of a NUL-filled CSV", lambda m, t, d: ["scores", _write(d / "n.csv", "sample\x00,x\n")],
     "error:"),
    ("export of an unknown model", lambda m, t, d: ["export", "nope", "--out", d / "e"],
     "no shipped model or model folder named 'nope'"),
]  # fmt: skip


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _unreadable(tmp: Path) -> Path:
    path = _write(tmp / "labs.json", json.dumps({"P1": {"fever": True}}))
    path.chmod(0)
    return path


@pytest.mark.parametrize(("what", "args", "fragment"), BAD, ids=[b[0] for b in BAD])
def test_bad_input_is_an_error_line_not_a_traceback(
    tiny_model_dir: Path, tile_folder: Path, tmp_path: Path, what: str, args, fragment: str
) -> None:
    argv = [str(a) for a in args(tiny_model_dir, tile_folder, tmp_path)]
    with unprivileged():
        result = runner.invoke(app, argv)
    assert isinstance(result.exception, SystemExit), (what, result.exception, result.output)
    assert result.exit_code == EXIT_USAGE, result.output
    assert "Traceback" not in result.output and "error:" in result.output
    assert fragment in result.output, result.output
