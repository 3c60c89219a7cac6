"""What the ``hemoscan`` commands share: exit codes, the error exit, option choices and options.

Light on purpose (Typer and the standard library only): every command module imports it, and
``hemoscan --help`` must not load torch, OpenCV or numpy.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, NoReturn, Optional

import typer

from hemoscan.choices import (
    BACKEND_CHOICES,
    BACKENDS,
    ENGINES,
    MODEL_FORMATS,
    PRECISION_CHOICES,
    QUANTIZATIONS,
    RESULT_FORMATS,
    REVIEW_EXPORT_FORMATS,
)

EXIT_TILES_FAILED = 1
EXIT_LABS_MISMATCH = 1
EXIT_UNKNOWN_IDS = 1
EXIT_USAGE = 2


def fail(message: str) -> NoReturn:
    """Print ``error: message`` in red on stderr and exit with :data:`EXIT_USAGE`."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(EXIT_USAGE)


def one_of(choices: type[Enum]) -> str:
    """The metavar of a repeatable option taking one of ``choices``, e.g. ``<geojson|coco>``
    (Typer's own reads ``<list[geojson|coco]>``)."""
    return f"<{'|'.join(c.value for c in choices)}>"


def _choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """Typer's choices: a ``str`` Enum with one member per value of a library tuple."""
    return Enum(name, {value: value for value in values}, type=str)  # type: ignore[return-value]


#: What a scan may run on (``auto`` included); :data:`RuntimeBackend`: a backend itself.
Backend = _choices("Backend", BACKEND_CHOICES)
Precision = _choices("Precision", PRECISION_CHOICES)
RuntimeBackend = _choices("RuntimeBackend", BACKENDS)
Engine = _choices("Engine", ENGINES)
ResultFormat = _choices("ResultFormat", RESULT_FORMATS)
ModelFormat = _choices("ModelFormat", MODEL_FORMATS)
Quantization = _choices("Quantization", QUANTIZATIONS)
ReviewExportFormat = _choices("ReviewExportFormat", REVIEW_EXPORT_FORMATS)

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
