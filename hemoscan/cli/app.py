"""``hemoscan`` commands. Each parses options, calls one library function and prints.

Heavy modules (torch, OpenCV, the pipeline) are imported inside the commands so that
``hemoscan --help`` answers at once.
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from hemoscan import __version__
from hemoscan.cli.review import review_command
from hemoscan.cli.scores import scores_command

app = typer.Typer(
    name="hemoscan",
    help="Find and count hemophagocytes and blood cells in bone-marrow smear images. "
    "Research use only: every automated finding is a suggestion for a pathologist to confirm.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_TILES_FAILED = 1
EXIT_LABS_MISMATCH = 1
EXIT_USAGE = 2


class ExportFormat(str, Enum):
    geojson = "geojson"
    coco = "coco"


class Backend(str, Enum):
    torch = "torch"
    onnx = "onnx"


class ModelFormat(str, Enum):
    onnx = "onnx"


class Quantization(str, Enum):
    int8 = "int8"


class Engine(str, Enum):
    local = "local"
    dask = "dask"


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


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(EXIT_USAGE)


@app.command()
def scan(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="Image files, folders (searched recursively), globs, or .txt lists of paths."
        ),
    ],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (created; re-running resumes).")
    ],
    model: Annotated[str, typer.Option(help="Shipped model name or model folder.")] = "",
    batch_size: Annotated[
        Optional[int],
        typer.Option(min=1, help="Tiles per forward pass [default: 1 on the CPU, 8 on a GPU]."),
    ] = None,
    workers: Annotated[
        int,
        typer.Option(
            min=0,
            help="Threads decoding images ahead of the model; with --engine dask and no "
            "--scheduler, the number of local Dask worker processes.",
        ),
    ] = 2,
    conf: Annotated[
        Optional[float],
        typer.Option(
            min=0.0,
            max=1.0,
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
            help="torch, or onnx: onnxruntime on the CPU (--model must be a folder made by `hemoscan export`)."
        ),
    ] = Backend.torch,
    streams: Annotated[
        Optional[int],
        typer.Option(
            min=1,
            help="Batches predicted at once, each in its own thread; results do not change.",
            show_default="one per CPU core with --backend onnx, else 1",
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
        Optional[list[ExportFormat]],
        typer.Option(help="Also write QuPath GeoJSON and/or COCO results (repeatable)."),
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
    qc_config: Annotated[
        Optional[Path],
        typer.Option(help="JSON or YAML file overriding image-quality thresholds (see README)."),
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Scan smear tiles or whole-slide images into OUT (detections.jsonl, tiles.csv, summary.json)."""
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
    from hemoscan.models.loading import DEFAULT_MODEL
    from hemoscan.pipeline import ScanOptions
    from hemoscan.pipeline import scan as run_scan
    from hemoscan.qc import QCThresholds

    class _TilesPerSecond(ProgressColumn):
        def render(self, task) -> Text:  # type: ignore[no-untyped-def]
            return Text(f"{task.speed or 0:.1f} tiles/s")

    from hemoscan.inference.scale import parse_scale

    try:
        scale_value = parse_scale(scale)
    except ValueError as e:
        _fail(f"--scale: {e}")
    try:
        qc = QCThresholds.from_file(qc_config) if qc_config else QCThresholds()
    except HemoscanError as e:
        _fail(str(e))
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
            summary = run_scan(
                sources,
                out,
                options,
                progress=lambda _: progress.advance(task),
                on_start=lambda total, todo: progress.update(task, total=todo),
            )
    except (HemoscanError, ValueError, OSError) as e:
        _fail(str(e))
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


@app.command()
def report(
    scan_dir: Annotated[Path, typer.Argument(help="Output folder of `hemoscan scan`.")],
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
            help="Marrow item suggested when at least this many hemophagocytes hold a cell of --engulfed-type.",
        ),
    ] = 1,
    engulfed_type: Annotated[
        Optional[list[str]],
        typer.Option(
            help="Engulfed type(s) for the marrow-item rule (repeatable).", show_default="nucleated"
        ),
    ] = None,
    allow_missing_labs: Annotated[
        bool,
        typer.Option(
            help="Exit 0 even when scanned samples have no lab panel or panels match no sample "
            "(they are still listed)."
        ),
    ] = False,
    fever_threshold: Annotated[
        Optional[float],
        typer.Option(
            help="Derive a missing fever finding from the temperature, °C "
            "(e.g. 38.5; not part of HLH-2004).",
            show_default="the fever finding only",
        ),
    ] = None,
    scd25_cutoff: Annotated[
        Optional[str],
        typer.Option(help="Laboratory sCD25 cut-off, e.g. '1800 U/mL'.", show_default="2400 U/mL"),
    ] = None,
    qc_config: Annotated[
        Optional[Path],
        typer.Option(help="JSON or YAML file overriding image-quality thresholds (see README)."),
    ] = None,
    min_nucleated: Annotated[
        Optional[int],
        typer.Option(
            min=1, help="Nucleated cells a sample needs not to be flagged as too few.",
            show_default="500",
        ),
    ] = None,
) -> None:
    """Write a per-sample report: the result, image-quality flags, the lab scores, the evidence.

    Exits 1 (after writing the reports) when scanned samples have no lab panel or lab panels
    match no scanned sample, unless --allow-missing-labs.
    """
    from dataclasses import replace
    from decimal import Decimal

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
        _fail(str(e))
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


@app.command("export")
def export_model(
    model: Annotated[str, typer.Argument(help="Shipped model name or model folder.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Model folder to write (model.onnx, config.json, onnx.json)."
        ),
    ],
    fmt: Annotated[ModelFormat, typer.Option("--format", help="Export format.")] = ModelFormat.onnx,
    opset: Annotated[int, typer.Option(min=13, help="ONNX opset.")] = 17,
    quantize: Annotated[
        Optional[Quantization],
        typer.Option(
            help="int8: also quantize the ONNX export statically (faster on the CPU, less "
            "exact: check it with `hemoscan evaluate --backend onnx`).",
            show_default="no quantization",
        ),
    ] = None,
    calibration: Annotated[
        Optional[list[str]],
        typer.Option(
            help="With --quantize: calibration tiles like the ones you scan (files, folders, "
            "quoted globs or .txt lists; repeatable).",
            show_default="procedurally generated example tiles",
        ),
    ] = None,
    calibration_images: Annotated[
        Optional[int],
        typer.Option(
            min=1,
            max=1024,
            help="With --quantize: most calibration images used.",
            show_default="32",
        ),
    ] = None,
) -> None:
    """Export a model for the fast CPU path: then `hemoscan scan --model OUT --backend onnx`."""
    from hemoscan.errors import HemoscanError
    from hemoscan.model_export.onnx import export_onnx
    from hemoscan.models.loading import load_model
    from hemoscan.models.onnx_format import ONNX_FILE, load_onnx_model

    if quantize is None and (calibration or calibration_images is not None):
        _fail("--calibration and --calibration-images are only used with --quantize int8")
    try:
        folder = export_onnx(load_model(model), out, opset=opset,
                             quantize=quantize.value if quantize else None,
                             calibration=calibration, calibration_images=calibration_images)  # fmt: skip
        record = load_onnx_model(str(folder), threads=1).quantization_record if quantize else None
    except (HemoscanError, ValueError) as e:
        _fail(str(e))
    kind = f"{fmt.value}, opset {opset}" + (f", {record['method']}" if record else "")
    typer.echo(f"{model} exported to {folder / ONNX_FILE} ({kind}); "
               f"scan with: hemoscan scan SOURCES --model {folder} --backend onnx")  # fmt: skip
    if record:
        typer.echo(
            f"int8 calibrated on {record['calibration_note']}.\n"
            f"heatmap probability vs float32 on those images: max |difference| "
            f"{record['max_abs_heatmap_prob_diff']:.3g}, mean {record['mean_abs_heatmap_prob_diff']:.3g} "
            f"(recorded in {folder / 'onnx.json'}).\n"
            f"int8 results are not those of float32: measure accuracy on your data with "
            f"hemoscan evaluate --model {folder} --backend onnx --data ..."
        )


app.command("scores")(scores_command)
app.command("review")(review_command)


@app.command("example-tiles")
def example_tiles(
    out: Annotated[Path, typer.Argument(help="Folder to write the example tiles to.")],
    n_tiles: Annotated[int, typer.Option(min=1, help="Number of tiles.")] = 6,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Write procedurally generated example tiles (not real patient data) for a demo scan."""
    from hemoscan.examples import write_example_tiles

    paths = write_example_tiles(out, n_tiles=n_tiles, seed=seed)
    typer.echo(f"{len(paths)} procedurally generated example tiles -> {out}")


@app.command()
def models() -> None:
    """List the shipped models and the registered architectures."""
    from hemoscan.models import list_models
    from hemoscan.models.loading import DEFAULT_MODEL, list_shipped_models

    for name in list_shipped_models():
        typer.echo(f"{name}{'  (default)' if name == DEFAULT_MODEL else ''}")
    typer.echo(f"architectures: {', '.join(list_models())}")


@app.command()
def evaluate(
    model: Annotated[str, typer.Option(help="Shipped model name or model folder.")] = "",
    data: Annotated[
        Optional[list[str]],
        typer.Option(
            help="shared:NAMES (txl-val, txl-val-native, composed-val, composed-val-real-host, "
            "segpc-heldout, segpc-heldout-native, bal-heldout, txl-dev, composed-dev, "
            "default), FORMAT:PATH (coco, yolo, voc, qupath, masks) or spec:FILE; repeatable.",
            show_default="shared:default",
        ),
    ] = None,
    data_root: Annotated[
        Optional[Path],
        typer.Option(help="Folder of the public sets.", show_default="../shared/datasets"),
    ] = None,
    out: Annotated[
        Optional[Path], typer.Option("--out", "-o", help="Also write the metrics as JSON.")
    ] = None,
    limit: Annotated[
        Optional[int], typer.Option(min=1, help="Evaluate the first N fields of each set.")
    ] = None,
    classes: Annotated[
        Optional[str],
        typer.Option(help="Class map for FORMAT:PATH data, e.g. 0=nucleated,1=rbc,2=platelet."),
    ] = None,
    split: Annotated[Optional[str], typer.Option(help="Split of FORMAT:PATH data.")] = None,
    scale: Annotated[
        Optional[str],
        typer.Option(
            help="Resize factor for FORMAT:PATH data, 'auto' (each image's own estimate, as "
            "`hemoscan scan` does) or 'oracle' (median labelled red cell).",
            show_default="1",
        ),
    ] = None,
    composed_n: Annotated[int, typer.Option(min=1, help="Fields of the composed sets.")] = 200,
    composed: Annotated[
        bool, typer.Option("--composed", help="FORMAT:PATH data are composed images (say so).")
    ] = False,
    tune_thresholds: Annotated[
        bool,
        typer.Option(
            help="First tune per-class thresholds on --tune-data and store them in the model "
            "folder's config.json (not for shipped models)."
        ),
    ] = False,
    tune_data: Annotated[
        Optional[list[str]],
        typer.Option(
            help="Tuning data (never reporting data).", show_default="shared:txl-dev,composed-dev"
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="torch device: cpu, cuda, ...")] = "cpu",
    backend: Annotated[
        Backend,
        typer.Option(
            help="torch, or onnx: an ONNX export (e.g. int8) made by `hemoscan export`, run by "
            "onnxruntime on the CPU (--model is then its folder)."
        ),
    ] = Backend.torch,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Evaluate a model (AP, precision/recall, hemophagocyte metrics, counts); print and write JSON.

    Needs the training package and the train extra, installed from a checkout.
    """
    try:
        from hemoscan_training import evaluate as ev
    except ImportError as e:
        _fail(f"hemoscan evaluate needs the training extras (pip install -e '.[train]'): {e}")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hemoscan.errors import HemoscanError
    from hemoscan.inference.scale import parse_scale
    from hemoscan.models.loading import DEFAULT_MODEL

    scale_value: object = scale
    if scale not in (None, "oracle"):
        try:
            scale_value = parse_scale(scale)
        except ValueError:
            _fail(f"--scale must be a number, 'auto' or 'oracle', not {scale!r}")
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                        TimeElapsedColumn(), disable=quiet, transient=True)  # fmt: skip
    tasks: dict[str, object] = {}

    def advance(suite: str, done: int, total: int) -> None:
        if suite not in tasks:
            tasks[suite] = progress.add_task(suite, total=total)
        progress.update(tasks[suite], completed=done)  # type: ignore[arg-type]

    try:
        with progress:
            metrics = ev.run(
                model or DEFAULT_MODEL,
                data or ["shared:default"],
                data_root=data_root or ev.DEFAULT_DATA_ROOT,
                out=out,
                limit=limit,
                class_map=ev.parse_class_map(classes),
                split=split,
                scale=scale_value,  # type: ignore[arg-type]
                composed_n=composed_n,
                composed=composed,
                tune=tune_thresholds,
                tune_data=tune_data or ["shared:txl-dev,composed-dev"],
                device=device,
                backend=backend.value,
                progress=advance,
            )
    except (HemoscanError, ValueError) as e:
        _fail(str(e))
    ev.print_metrics(metrics)
    if out:
        typer.echo(f"metrics -> {out}")


@app.command()
def train(
    config: Annotated[
        Optional[Path],
        typer.Option(
            "--config", "-c", help="YAML training config (examples in training/configs/)."
        ),
    ] = None,
    overrides: Annotated[
        Optional[list[str]],
        typer.Option(
            "--set", help="Override a config value, e.g. --set optim.lr=1e-3 (repeatable)."
        ),
    ] = None,
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Number of epochs.")] = None,
    fraction: Annotated[
        Optional[float],
        typer.Option(
            min=0.0, max=1.0, help="Scale steps per epoch and dataset sizes, for quick runs."
        ),
    ] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="Run folder.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="Random seed.")] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in --out from its last.pt.")
    ] = False,
    deterministic: Annotated[
        bool, typer.Option("--deterministic", help="Deterministic algorithms (bitwise-repeatable).")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Train a detector: checkpoints, results.csv, curves.png and the best model in OUT/best.

    Needs the training extras: pip install -e ".\\[train]" from a checkout.
    """
    import importlib.util

    needed = ("albumentations", "hemoscan_training")
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        _fail(f"hemoscan train needs {', '.join(missing)}: pip install -e '.[train]' (a checkout)")
    from hemoscan.errors import HemoscanError
    from hemoscan_training.train import run_training

    try:
        result = run_training(config, overrides or (), epochs=epochs, fraction=fraction, out=out,
                              seed=seed, deterministic=deterministic or None, resume=resume or None,
                              quiet=quiet or None)  # fmt: skip
    except (HemoscanError, ValueError) as e:
        _fail(str(e))
    best = f"; best model {result.best_model}" if result.best_model else ""
    typer.echo(f"{result.status}: {result.epochs_done} epoch(s) in {result.out}{best}")
    if result.status == "aborted_nonfinite":
        raise typer.Exit(1)  # the run diverged: see the log; last.pt keeps the last good epoch


def main() -> None:
    app()


if __name__ == "__main__":
    main()
