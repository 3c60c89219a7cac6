"""The ``hemoscan`` command: one module per command under :mod:`hemoscan.cli`, registered here.

Commands parse options, call one library function and print. Heavy modules (torch, OpenCV,
the pipeline) are imported inside the commands so that ``hemoscan --help`` answers at once.
Other installed packages add commands through the ``hemoscan.commands`` entry-point group
(``name = "package.module:function"``): the training package adds ``train`` and ``evaluate``
that way, so the library carries no training options.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Annotated

import typer

from hemoscan import __version__
from hemoscan.cli.common import EXIT_LABS_MISMATCH, EXIT_TILES_FAILED, EXIT_USAGE
from hemoscan.cli.example_tiles import example_tiles_command
from hemoscan.cli.export_model import export_model_command
from hemoscan.cli.models import models_command
from hemoscan.cli.report import report_command
from hemoscan.cli.review import review_command
from hemoscan.cli.scan import scan_command
from hemoscan.cli.scores import scores_command

__all__ = ["EXIT_LABS_MISMATCH", "EXIT_TILES_FAILED", "EXIT_USAGE", "app", "main"]

COMMAND_GROUP = "hemoscan.commands"

app = typer.Typer(
    name="hemoscan",
    help="Find and count hemophagocytes and blood cells in bone-marrow smear images. "
    "Research use only: every automated finding is a suggestion for a pathologist to confirm.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"hemoscan {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")
    ] = False,
) -> None:
    pass


app.command("scan")(scan_command)
app.command("report")(report_command)
app.command("scores")(scores_command)
app.command("review")(review_command)
app.command("export")(export_model_command)
app.command("example-tiles")(example_tiles_command)
app.command("models")(models_command)


def _add_plugin_commands() -> None:
    for plugin in entry_points(group=COMMAND_GROUP):
        try:
            command = plugin.load()
        except Exception as e:  # a broken add-on must not take the library's own commands down
            typer.secho(f"warning: command {plugin.name!r} from {plugin.value} not loaded: {e}",
                        fg=typer.colors.YELLOW, err=True)  # fmt: skip
            continue
        app.command(plugin.name)(command)


_add_plugin_commands()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
