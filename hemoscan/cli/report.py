"""``hemoscan report DIR --out FILE``: the per-sample report a pathologist signs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hemoscan.cli.common import (
    EXIT_LABS_MISMATCH,
    FeverThresholdOption,
    QCConfigOption,
    SCD25CutoffOption,
    fail,
)


def report_command(
    scan_dir: Annotated[
        Path, typer.Argument(metavar="SCAN_DIR", help="Output folder of `hemoscan scan`.")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="HTML report (an index page when there are several samples)."
        ),
    ],
    labs: Annotated[
        Optional[Path], typer.Option(help="Lab panel file (JSON, YAML or CSV) for the scores.")
    ] = None,
    pdf: Annotated[Optional[Path], typer.Option(help="Also write the report as PDF.")] = None,
    min_hemophagocytes: Annotated[
        int,
        typer.Option(
            min=1,
            metavar="<int>",
            help="Marrow item suggested when at least this many hemophagocytes hold a cell of --engulfed-type.",
        ),
    ] = 1,
    engulfed_type: Annotated[
        Optional[list[str]],
        typer.Option(
            metavar="<type>",
            help="Engulfed type(s) for the marrow-item rule (repeatable).",
            show_default="nucleated",
        ),
    ] = None,
    allow_missing_labs: Annotated[
        bool,
        typer.Option(
            help="Exit 0 even when scanned samples have no lab panel or panels match no sample "
            "(they are still listed)."
        ),
    ] = False,
    fever_threshold: FeverThresholdOption = None,
    scd25_cutoff: SCD25CutoffOption = None,
    qc_config: QCConfigOption = None,
    min_nucleated: Annotated[
        Optional[int],
        typer.Option(
            min=1,
            metavar="<int>",
            help="Nucleated cells a sample needs not to be flagged as too few.",
            show_default="500",
        ),
    ] = None,
) -> None:
    """Write a per-sample report of a scan.

    Each report holds the result, image-quality flags, the lab scores and the evidence.

    Exits 1 (after writing the reports) when scanned samples have no lab panel or lab panels
    match no scanned sample, unless --allow-missing-labs.
    """
    from dataclasses import replace
    from decimal import Decimal

    for option, path, example in (("--out", out, "report.html"), ("--pdf", pdf, "report.pdf")):
        if path is not None and path.is_dir():
            fail(f"{path}: is a folder; {option} takes the file to write, e.g. {path / example}")

    from hemoscan.errors import HemoscanError
    from hemoscan.qc import QCThresholds
    from hemoscan.report.build import build_report_set
    from hemoscan.report.render import write_reports
    from hemoscan.scores import MarrowRule, ScoreSettings

    try:
        rule = MarrowRule(
            min_count=min_hemophagocytes, engulfed_types=tuple(engulfed_type or ("nucleated",))
        )
        settings = ScoreSettings(
            fever_threshold_c=None if fever_threshold is None else Decimal(str(fever_threshold)),
            scd25_cutoff=scd25_cutoff,
        )
        qc = QCThresholds.from_file(qc_config) if qc_config else QCThresholds()
        if min_nucleated is not None:
            qc = replace(qc, min_nucleated=min_nucleated)
        result = build_report_set(scan_dir, labs, rule, settings=settings, qc=qc)
        written = write_reports(result.reports, out, pdf)
    except (HemoscanError, ValueError, OSError) as e:
        fail(str(e))
    typer.echo(f"{len(result.reports)} sample report(s) -> {', '.join(str(p) for p in written[:3])}"
               f"{' ...' if len(written) > 3 else ''}")  # fmt: skip
    if labs is None:
        typer.echo("no --labs given: scores not computed")
        return
    for sample in result.samples_without_labs:
        typer.secho(f"no lab panel for scanned sample {sample!r} in {labs}: its scores are not "
                    "computed", fg=typer.colors.YELLOW, err=True)  # fmt: skip
    for name, closest in result.panels_without_sample:
        hint = f"; did you mean {closest!r}?" if closest else ""
        typer.secho(f"lab panel {name!r} in {labs} matches no scanned sample{hint}",
                    fg=typer.colors.YELLOW, err=True)  # fmt: skip
    if result.labs_mismatch and not allow_missing_labs:
        message = "samples and lab panels do not match (reports written; --allow-missing-labs accepts this)"
        typer.secho(message, fg=typer.colors.RED, err=True)
        raise typer.Exit(EXIT_LABS_MISMATCH)
