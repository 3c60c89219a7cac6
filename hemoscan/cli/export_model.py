"""``hemoscan export MODEL --out DIR``: a model in another format (ONNX) for the fast CPU path."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from hemoscan.cli.common import ModelFormat, Quantization, fail


def export_model_command(
    model: Annotated[
        str, typer.Argument(metavar="MODEL", help="Shipped model name or model folder.")
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Model folder to write (model.onnx, config.json, onnx.json)."
        ),
    ],
    fmt: Annotated[ModelFormat, typer.Option("--format", help="Export format.")] = ModelFormat.onnx,
    opset: Annotated[int, typer.Option(min=13, metavar="<int>", help="ONNX opset.")] = 17,
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
            metavar="<source>",
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
            metavar="<int>",
            help="With --quantize: most calibration images used.",
            show_default="32",
        ),
    ] = None,
) -> None:
    """Export a model to ONNX for the fast CPU path.

    Then scan with it: hemoscan scan --model OUT --backend onnx.
    """
    from hemoscan.errors import HemoscanError
    from hemoscan.model_export.onnx import export_onnx
    from hemoscan.models.loading import load_model
    from hemoscan.models.onnx_format import ONNX_FILE, load_onnx_model

    if quantize is None and (calibration or calibration_images is not None):
        fail("--calibration and --calibration-images are only used with --quantize int8")
    try:
        folder = export_onnx(load_model(model), out, opset=opset,
                             quantize=quantize.value if quantize else None,
                             calibration=calibration, calibration_images=calibration_images)  # fmt: skip
        record = load_onnx_model(str(folder), threads=1).quantization_record if quantize else None
    except (HemoscanError, ValueError) as e:
        fail(str(e))
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
