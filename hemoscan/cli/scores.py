"""``hemoscan scores LABS``: HLH / MAS scores of lab panels, as readable tables or JSON."""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hemoscan.cli.common import FeverThresholdOption, SCD25CutoffOption, fail

if TYPE_CHECKING:
    from rich.console import Console

    from hemoscan.scores import ScoreItem, ScoreReport


def scores_command(
    labs: Annotated[
        Path,
        typer.Argument(
            metavar="LABS",
            help="Lab-panel file (.json, .yaml, .yml, .csv wide or long) or a folder.",
        ),
    ],
    json_output: Annotated[
        bool, typer.Option("--json", help="Print JSON: a list, one object per sample.")
    ] = False,
    fever_threshold: FeverThresholdOption = None,
    scd25_cutoff: SCD25CutoffOption = None,
) -> None:
    """Compute the HLH and MAS scores of lab panels.

    HScore, HLH-2004, 2016 MAS criteria, MS and MH scores and ferritin:ESR.
    """
    from hemoscan.errors import HemoscanError
    from hemoscan.labs.readers import iter_lab_panels
    from hemoscan.scores import ScoreSettings, compute_all

    try:
        settings = ScoreSettings(
            fever_threshold_c=None if fever_threshold is None else Decimal(str(fever_threshold)),
            scd25_cutoff=scd25_cutoff,
        )
        for _ in iter_lab_panels(labs):  # the whole file is checked before anything is printed
            pass
        # then streamed: one panel and one report in memory at a time, however many samples
        reports = (compute_all(panel, settings=settings) for panel in iter_lab_panels(labs))
        if json_output:
            _print_json(reports)
            return
        from rich.console import Console

        console = Console(highlight=False)
        for report in reports:
            _print_report(console, report)
    except (HemoscanError, OSError) as e:
        fail(str(e))


def _print_json(reports: Iterator[ScoreReport]) -> None:
    """``json.dumps(list_of_reports, indent=2)``, written one report at a time."""
    first = True
    for report in reports:
        item = json.dumps(report.to_dict(), indent=2, ensure_ascii=False).replace("\n", "\n  ")
        typer.echo(("[\n  " if first else ",\n  ") + item, nl=False)
        first = False
    typer.echo("[]" if first else "\n]")


def _outcome(item: ScoreItem) -> str:
    from hemoscan.scores.summary import text

    if item.status == "scored":
        return text(item.points, 4)
    if item.points_lower is not None and item.points_lower != item.points_upper:
        return f"{item.status} ({text(item.points_lower, 4)} to {text(item.points_upper, 4)})"
    return item.status


def _print_report(console: Console, report: ScoreReport) -> None:
    from rich.markup import escape
    from rich.table import Table

    from hemoscan.scores.summary import summary_lines, text

    source = f" ({report.marrow_source})" if report.marrow_source else ""
    marrow = text(report.marrow_hemophagocytosis)
    console.print(f"[bold]Sample {escape(report.sample)}[/bold]  marrow hemophagocytosis: "
                  f"{marrow}{source}")  # fmt: skip
    summary = Table("Score", "Result", header_style="bold")
    for line in summary_lines(report):
        summary.add_row(line.name, escape(line.text))
    console.print(summary)
    results = (
        ("HScore", report.hscore), ("HLH-2004", report.hlh2004), ("MAS 2016", report.mas2016),
        ("MS score", report.ms_score), ("MH score", report.mh_score),
        ("Ferritin:ESR", report.ferritin_esr),
    )  # fmt: skip
    for title, result in results:
        table = Table("Item", "Value used", "Rule", "Points / met", "Note", title=title,
                      caption=result.citation, title_justify="left", caption_justify="left",
                      header_style="bold")  # fmt: skip
        for item in result.items:
            for row, indent in ((item, ""), *((part, "  ") for part in item.parts)):
                value = "-" if row.value is None else f"{text(row.value)} {row.unit}".strip()
                table.add_row(indent + row.name, value, row.threshold, _outcome(row), row.note)
        console.print(table)
    console.print()
