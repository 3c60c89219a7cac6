import subprocess
import sys

import pytest
import typer
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


def test_help_is_plain_text_that_reads_as_written() -> None:
    """No markup swallows ``[dask]`` or leaves a ``\\[`` escape; options show no ``<bool>``,
    ``<list[...]>`` or ``<int range>`` placeholder (an argument's ``<list[str]>`` is Typer's)."""
    runner = CliRunner()
    scan_help = runner.invoke(app, ["scan", "--help"], terminal_width=200).output
    assert "pip install 'hemoscan[dask]'" in scan_help
    assert "--export <geojson|coco>" in scan_help
    for command in [*typer.main.get_command(app).commands, ""]:  # type: ignore[attr-defined]
        result = runner.invoke(app, [command, "--help"] if command else ["--help"])
        assert result.exit_code == 0, (command, result.output)
        assert "\\[" not in result.output, command
        options = result.output.partition("Options:")[2]
        for placeholder in ("<bool>", "<list[", " range>"):
            assert placeholder not in options, (command, placeholder)
