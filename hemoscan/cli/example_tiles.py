"""``hemoscan example-tiles DIR``: procedurally generated tiles for a demo scan."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def example_tiles_command(
    out: Annotated[
        Path, typer.Argument(metavar="OUT", help="Folder to write the example tiles to.")
    ],
    n_tiles: Annotated[int, typer.Option(min=1, metavar="<int>", help="Number of tiles.")] = 6,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Write procedurally generated example tiles for a demo scan.

    They are drawn, not real patient data.
    """
    from hemoscan.examples import write_example_tiles

    paths = write_example_tiles(out, n_tiles=n_tiles, seed=seed)
    typer.echo(f"{len(paths)} procedurally generated example tiles -> {out}")
