"""What the ``hemoscan`` commands share: exit codes, the error exit, option choices and options.

Light on purpose (Typer and the standard library only): every command module imports it, and
``hemoscan --help`` must not load torch, OpenCV or numpy.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer

EXIT_TILES_FAILED = 1
EXIT_LABS_MISMATCH = 1
EXIT_UNKNOWN_IDS = 1
EXIT_USAGE = 2


def fail(message: str) -> NoReturn:
    """Print ``error: message`` in red on stderr and exit with :data:`EXIT_USAGE`."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(EXIT_USAGE)


class Backend(str, Enum):
    torch = "torch"
    onnx = "onnx"


class Engine(str, Enum):
    local = "local"
    dask = "dask"


class ResultFormat(str, Enum):
    geojson = "geojson"
    coco = "coco"


class ModelFormat(str, Enum):
    onnx = "onnx"


class Quantization(str, Enum):
    int8 = "int8"


QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
QCConfigOption = Annotated[
    Optional[Path],
    typer.Option(help="JSON or YAML file overriding image-quality thresholds (see README)."),
]
FeverThresholdOption = Annotated[
    Optional[float],
    typer.Option(
        help="Derive a missing fever finding from the temperature, °C "
        "(e.g. 38.5; not part of HLH-2004).",
        show_default="the fever finding only",
    ),
]
SCD25CutoffOption = Annotated[
    Optional[str],
    typer.Option(help="Laboratory sCD25 cut-off, e.g. '1800 U/mL'.", show_default="2400 U/mL"),
]
