import subprocess
import sys

import pytest
from typer.testing import CliRunner

from hemoscan.cli.app import app


def test_importing_the_cli_loads_no_heavy_module() -> None:
    """``hemoscan --help`` must answer at once: torch, OpenCV, numpy load inside commands only."""
    heavy = ("torch", "cv2", "numpy", "onnx", "onnxruntime", "weasyprint", "hemoscan.pipeline")
    code = f"import sys; from hemoscan.cli.app import app; bad = [m for m in {heavy!r} if m in sys.modules]; assert not bad, bad"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("command", "option"),
    [("scan", "--tile-size"), ("export", "--format"), ("report", "--labs"), ("scores", "--json"),
     ("example-tiles", "--n-tiles"), ("models", "--help")],
)  # fmt: skip
def test_every_command_has_help(command: str, option: str) -> None:
    result = CliRunner().invoke(app, [command, "--help"])
    assert result.exit_code == 0 and option in result.output
