"""``hemoscan train`` and ``hemoscan evaluate``: registered by the training package through the
``hemoscan.commands`` entry-point group, so the library CLI carries no training options."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hemoscan.cli.common import Precision, QuietOption, RuntimeBackend, fail


def evaluate_command(
    model: Annotated[str, typer.Option(help="Shipped model name or model folder.")] = "",
    data: Annotated[
        Optional[list[str]],
        typer.Option(
            help="shared:NAMES (txl-val, txl-val-native, txl-val-scanner, composed-val, "
            "composed-val-real-host, composed-val-procedural-host, "
            "segpc-heldout, segpc-heldout-native, bal-heldout, txl-dev, composed-dev, "
            "default), FORMAT:PATH (coco, yolo, voc, qupath, masks) or spec:FILE; repeatable.",
            metavar="<data>",
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
        Optional[int],
        typer.Option(min=1, metavar="<int>", help="Evaluate the first N fields of each set."),
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
    composed_n: Annotated[
        int, typer.Option(min=1, metavar="<int>", help="Fields of the composed sets.")
    ] = 200,
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
            metavar="<data>",
            help="Tuning data (never reporting data; repeatable).",
            show_default="shared:txl-dev,composed-dev",
        ),
    ] = None,
    device: Annotated[str, typer.Option(help="torch device: cpu, cuda, ...")] = "cpu",
    backend: Annotated[
        RuntimeBackend,
        typer.Option(
            help="torch, or onnx: an ONNX export (e.g. int8) made by `hemoscan export`, run by "
            "onnxruntime on the CPU (--model is then its folder)."
        ),
    ] = RuntimeBackend.torch,
    precision: Annotated[
        Precision,
        typer.Option(
            help="With --backend onnx: the model folder's own export (auto), it in float32 "
            "(fp32), or the int8 export it carries (int8), as `hemoscan scan --precision` runs."
        ),
    ] = Precision.auto,
    quiet: QuietOption = False,
) -> None:
    """Evaluate a model on labelled image sets.

    Prints AP, precision/recall, hemophagocyte metrics and counts (and writes them as JSON with
    --out). Needs the training package and the train extra, installed from a checkout.
    """
    try:
        from hemoscan_training import evaluate as ev
    except ImportError as e:
        fail(f"hemoscan evaluate needs the training extras (pip install -e '.[train]'): {e}")
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from hemoscan.errors import HemoscanError
    from hemoscan.inference.scale import parse_scale
    from hemoscan.models.loading import DEFAULT_MODEL

    scale_value: object = scale
    if scale not in (None, "oracle"):
        try:
            scale_value = parse_scale(scale)
        except ValueError:
            fail(f"--scale must be a number, 'auto' or 'oracle', not {scale!r}")
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
                precision=precision.value,
                progress=advance,
            )
    except (HemoscanError, ValueError) as e:
        fail(str(e))
    ev.print_metrics(metrics)
    if out:
        typer.echo(f"metrics -> {out}")


def train_command(
    config: Annotated[
        Optional[Path],
        typer.Option(
            "--config", "-c", help="YAML training config (examples in training/configs/)."
        ),
    ] = None,
    overrides: Annotated[
        Optional[list[str]],
        typer.Option(
            "--set",
            metavar="<key=value>",
            help="Override a config value, e.g. --set optim.lr=1e-3 (repeatable).",
        ),
    ] = None,
    epochs: Annotated[
        Optional[int], typer.Option(min=1, metavar="<int>", help="Number of epochs.")
    ] = None,
    fraction: Annotated[
        Optional[float],
        typer.Option(
            min=0.0,
            max=1.0,
            metavar="<float>",
            help="Scale steps per epoch and dataset sizes, for quick runs.",
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
    quiet: QuietOption = False,
) -> None:
    """Train a detector.

    Writes checkpoints, results.csv, curves.png and the best model in OUT/best. Needs the
    training extras: pip install -e '.[train]' from a checkout.
    """
    import importlib.util

    if importlib.util.find_spec("albumentations") is None:
        fail(
            "hemoscan train needs albumentations, a training extra: "
            "pip install -e '.[train]' (a checkout)"
        )
    from hemoscan_training.train import run_training

    from hemoscan.errors import HemoscanError

    try:
        result = run_training(config, overrides or (), epochs=epochs, fraction=fraction, out=out,
                              seed=seed, deterministic=deterministic or None, resume=resume or None,
                              quiet=quiet or None)  # fmt: skip
    except (HemoscanError, ValueError) as e:
        fail(str(e))
    best = f"; best model {result.best_model}" if result.best_model else ""
    typer.echo(f"{result.status}: {result.epochs_done} epoch(s) in {result.out}{best}")
    if result.status == "aborted_nonfinite":
        raise typer.Exit(1)  # the run diverged: see the log; last.pt keeps the last good epoch
