"""``hemoscan scan SOURCES --out DIR``: find and count cells in tiles and whole slides."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hemoscan.cli.common import (
    EXIT_TILES_FAILED,
    Backend,
    Engine,
    Precision,
    QCConfigOption,
    QuietOption,
    ResultFormat,
    fail,
    one_of,
)


def scan_command(
    sources: Annotated[
        list[str],
        typer.Argument(
            metavar="SOURCES",
            help="Image files, folders (searched recursively), globs, or .txt lists of paths.",
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (created; re-running resumes).")
    ],
    model: Annotated[str, typer.Option(help="Shipped model name or model folder.")] = "",
    batch_size: Annotated[
        Optional[int],
        typer.Option(
            min=1,
            metavar="<int>",
            help="Tiles per forward pass.",
            show_default="1 on the CPU, 8 on a GPU",
        ),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=0,
            metavar="<int>",
            help="Threads decoding images ahead of the model; with --engine dask and no "
            "--scheduler, the number of local Dask worker processes.",
        ),
    ] = 2,
    conf: Annotated[
        Optional[float],
        typer.Option(
            min=0.0,
            max=1.0,
            metavar="<float>",
            help="Score threshold for every class.",
            show_default="the model's tuned thresholds",
        ),
    ] = None,
    device: Annotated[
        str, typer.Option(help="torch device: auto (a GPU when present), cpu, cuda, cuda:1, ...")
    ] = "auto",
    backend: Annotated[
        Backend,
        typer.Option(
            help="auto: the model's ONNX export in onnxruntime on the CPU where its folder holds "
            "one (shipped models do), else torch (and always on a GPU); torch; or onnx (--model "
            "must then be a folder holding an export, see `hemoscan export`)."
        ),
    ] = Backend.auto,
    precision: Annotated[
        Precision,
        typer.Option(
            help="Which ONNX export runs: auto (the model's own, float32 for shipped models; a "
            "resumed scan keeps its precision), fp32, or int8 (the int8 export the default model "
            "carries: about 1.7x as fast on CPUs with VNNI; see the README)."
        ),
    ] = Precision.auto,
    streams: Annotated[
        Optional[int],
        typer.Option(
            min=1,
            metavar="<int>",
            help="Batches predicted at once, each in its own thread; results do not change.",
            show_default="one per CPU core when onnxruntime runs, else 1",
        ),
    ] = None,
    sample_id: Annotated[
        Optional[str],
        typer.Option(help="Sample name for every tile.", show_default="one sample per folder"),
    ] = None,
    tile_size: Annotated[
        Optional[int],
        typer.Option(
            help="Window size for large images, pixels, multiple of 32.", show_default="the model's"
        ),
    ] = None,
    overlap: Annotated[
        Optional[int],
        typer.Option(
            help="Overlap of windows, pixels, multiple of 32.", show_default="the model's"
        ),
    ] = None,
    scale: Annotated[
        str,
        typer.Option(
            help="'auto': each tile's magnification from its own red (or nucleated) cells, "
            "settled per sample where a tile has too few; or a resize factor applied before "
            "detection (the default model expects red cells of about 40 px)."
        ),
    ] = "auto",
    mpp: Annotated[
        Optional[float],
        typer.Option(
            min=0.01,
            max=100.0,
            metavar="<float>",
            help="Pixel size (µm per pixel, level 0) of whole-slide images whose metadata has none.",
            show_default="the slide's metadata",
        ),
    ] = None,
    save_overlays: Annotated[
        bool, typer.Option(help="Write each tile with its boxes to OUT/overlays.")
    ] = False,
    save_crops: Annotated[
        bool, typer.Option(help="Write a crop of every hemophagocyte and macrophage to OUT/crops.")
    ] = False,
    export: Annotated[
        Optional[list[ResultFormat]],
        typer.Option(
            metavar=one_of(ResultFormat),
            help="Also write QuPath GeoJSON and/or COCO results (repeatable).",
        ),
    ] = None,
    retry_failed: Annotated[bool, typer.Option(help="On resume, scan failed tiles again.")] = False,
    engine: Annotated[
        Engine,
        typer.Option(
            help="local (this process), or dask: share the tiles out over a Dask cluster's "
            "workers (pip install 'hemoscan[dask]')."
        ),
    ] = Engine.local,
    scheduler: Annotated[
        Optional[str],
        typer.Option(
            help="Dask scheduler address, e.g. tcp://10.0.0.5:8786 (with --engine dask).",
            show_default="a local cluster of --workers processes",
        ),
    ] = None,
    qc_config: QCConfigOption = None,
    quiet: QuietOption = False,
) -> None:
    """Scan smear tiles or whole-slide images into OUT.

    Writes detections.jsonl, tiles.csv and summary.json there; re-running resumes.
    """
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        ProgressColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.text import Text

    from hemoscan.errors import HemoscanError
    from hemoscan.io.sources import TileSources

    try:  # before the heavy imports below: a mistyped path or model name is answered at once
        TileSources(sources, sample_id).check()
        from hemoscan.models.loading import DEFAULT_MODEL, resolve_model_folder

        resolve_model_folder(model or DEFAULT_MODEL)
    except HemoscanError as e:
        fail(str(e))
    from hemoscan.inference.scale import parse_scale
    from hemoscan.pipeline import ScanOptions
    from hemoscan.pipeline import scan as run_scan
    from hemoscan.qc import QCThresholds

    class _TilesPerSecond(ProgressColumn):
        def render(self, task) -> Text:  # type: ignore[no-untyped-def]
            return Text(f"{task.speed or 0:.1f} tiles/s")

    try:
        scale_value = parse_scale(scale)
    except ValueError as e:
        fail(f"--scale: {e}")
    try:
        qc = QCThresholds.from_file(qc_config) if qc_config else QCThresholds()
    except HemoscanError as e:
        fail(str(e))
    options = ScanOptions(
        model=model or DEFAULT_MODEL,
        batch_size=batch_size,
        workers=workers,
        conf=conf,
        device=device,
        sample_id=sample_id,
        tile_size=tile_size,
        overlap=overlap,
        scale=scale_value,
        save_overlays=save_overlays,
        save_crops=save_crops,
        exports=tuple(e.value for e in export or ()),
        retry_failed=retry_failed,
        backend=backend.value,
        precision=precision.value,
        engine=engine.value,
        scheduler=scheduler,
        mpp=mpp,
        streams=streams,
        qc=qc,
    )
    progress = Progress(
        TextColumn("scanning"), BarColumn(), MofNCompleteColumn(), _TilesPerSecond(), TimeElapsedColumn(),
        disable=quiet, transient=False,
    )  # fmt: skip
    task = progress.add_task("scan", total=None)
    try:
        with progress:
            try:
                summary = run_scan(
                    sources,
                    out,
                    options,
                    progress=lambda _: progress.advance(task),
                    on_start=lambda total, todo: progress.update(task, total=todo),
                )
            except BaseException:
                if progress.tasks[0].total is None:  # failed before scanning: no empty bar left
                    progress.update(task, visible=False)
                raise
    except (HemoscanError, ValueError, OSError) as e:
        fail(str(e))
    failed_now = f", {summary.tiles_failed} failed" if summary.tiles_failed else ""
    hemo = sum(s.counts["hemophagocyte"] for s in summary.samples)
    typer.echo(
        f"{summary.tiles_scanned_now} tiles scanned ({summary.tiles_skipped} already done{failed_now}) "
        f"in {summary.seconds:.1f} s, {summary.tiles_per_second:.1f} tiles/s; "
        f"{len(summary.samples)} sample(s), {hemo} hemophagocyte(s) suggested -> {out}"
    )
    if summary.regions_background:
        typer.echo(f"{summary.regions_background} slide region(s) of blank glass skipped")
    if summary.tiles_failed:
        typer.secho(
            f"{summary.tiles_failed} tile(s) failed: see {out / 'tiles.csv'}",
            fg=typer.colors.YELLOW,
            err=True,
        )
        raise typer.Exit(EXIT_TILES_FAILED)
