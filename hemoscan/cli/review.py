"""``hemoscan review``: the review page, scripted and QuPath verdicts, and the training export."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hemoscan.cli.common import EXIT_UNKNOWN_IDS, ReviewExportFormat, fail


def _default_reviewer() -> str:
    import getpass

    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name (a container without /etc/passwd entry)
        return ""


def review_command(
    scan_dir: Annotated[
        Path, typer.Argument(metavar="SCAN_DIR", help="Output folder of `hemoscan scan`.")
    ],
    reviewer: Annotated[
        Optional[str],
        typer.Option(help="Your name, recorded with every verdict (needed with --apply).",
                     show_default="your login name"),  # fmt: skip
    ] = None,
    port: Annotated[
        Optional[int],
        typer.Option(min=1, max=65535, metavar="<int>", help="Port on 127.0.0.1.",
                     show_default="8765, else any free"),  # fmt: skip
    ] = None,
    no_browser: Annotated[bool, typer.Option("--no-browser", help="Do not open a browser.")] = False,
    apply: Annotated[
        Optional[Path],
        typer.Option(help="Record the verdicts of a CSV (columns id and verdict, optionally label, "
                          "engulfed_rbc, engulfed_nucleated, engulfed_platelet) or of a QuPath "
                          "GeoJSON re-classified in QuPath, then exit."),  # fmt: skip
    ] = None,
    only_changed: Annotated[
        bool,
        typer.Option(help="With a GeoJSON --apply: record only the objects whose class or engulfed "
                          "cells changed (unchanged ones stay pending instead of accepted)."),  # fmt: skip
    ] = False,
    export: Annotated[
        Optional[ReviewExportFormat],
        typer.Option(help="Write the reviewed cells as a training set to --out, then exit."),
    ] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Folder for --export.")] = None,
) -> None:
    """Review the suggestions of a scan in the browser.

    Accept, reject or relabel each hemophagocyte and macrophage, fix engulfed counts, add
    missed cells (saved to SCAN_DIR/review.jsonl). Or record verdicts from a file (--apply),
    or export the reviewed cells as training data (--export)."""
    from hemoscan.errors import HemoscanError

    if export is not None and apply is not None:
        fail("give --apply or --export, not both")
    if (export is None) != (out is None):
        fail("--export and --out go together")
    if only_changed and apply is None:
        fail("--only-changed is for --apply")
    try:
        if export is not None:
            from hemoscan.review.export import export_reviewed

            assert out is not None
            summary = export_reviewed(scan_dir, export.value, out)
            counts = ", ".join(f"{n} {c}" for c, n in summary.positives.items() if n) or "no positive"
            typer.echo(f"{summary.images} image(s) -> {out} ({counts}; {summary.ignore_regions} ignore "
                       f"region(s) over what nobody reviewed); read it with --data spec:{out / 'dataset.yaml'}")  # fmt: skip
            for w in summary.warnings:
                typer.secho(w, fg=typer.colors.YELLOW, err=True)
            return
        if apply is not None:
            if not reviewer:
                fail("--apply needs --reviewer NAME (it is recorded with every verdict)")
            from hemoscan.review.apply import apply_file

            assert reviewer is not None
            applied = apply_file(scan_dir, apply, reviewer, only_changed)
            typer.echo(f"{len(applied.verdicts)} verdict(s) from {apply} recorded in "
                       f"{scan_dir / 'review.jsonl'} (reviewer {reviewer})")  # fmt: skip
            if applied.unchanged:
                typer.echo(f"{applied.unchanged} unchanged object(s) left pending (--only-changed)")
            if applied.missing:
                typer.secho(f"{applied.missing} suggestion(s) of the file's images are not in it "
                            "(deleted in QuPath?): left pending", fg=typer.colors.YELLOW, err=True)  # fmt: skip
            if applied.unknown:
                shown = ", ".join(applied.unknown[:10]) + (" ..." if len(applied.unknown) > 10 else "")
                typer.secho(f"{len(applied.unknown)} id(s) in {apply} name no suggestion of this scan, "
                            f"skipped: {shown}", fg=typer.colors.YELLOW, err=True)  # fmt: skip
                raise typer.Exit(EXIT_UNKNOWN_IDS)
            return
        from hemoscan.review.server import ReviewSession, bind, create_app, serve

        session = ReviewSession(scan_dir, reviewer or _default_reviewer())
        sock = bind(port)
        app = create_app(session)
    except (HemoscanError, OSError) as e:
        fail(str(e))
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    n = len(session.index.suggestions)
    typer.echo(f"reviewing {n} suggestion(s) of {scan_dir} as {session.reviewer} at {url} "
               "(Ctrl+C stops; verdicts are saved as you go)")  # fmt: skip

    def open_browser() -> None:
        import webbrowser

        webbrowser.open(url)

    serve(app, sock, () if no_browser else (open_browser,))
