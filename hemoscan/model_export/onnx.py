"""Export a verified model to an ONNX model folder, for the fast CPU path (``hemoscan export``).

The folder's layout and sidecar are :mod:`hemoscan.models.onnx_format`'s. An INT8 export
(``quantize="int8"``, see :mod:`hemoscan.model_export.quantize`) holds the quantized graph as
``model.onnx`` (the full-precision one is not kept) and adds a ``"quantization"`` record to the
sidecar.

``onnx`` is optional (``pip install 'hemoscan[onnx]'``) and imported only when exporting.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hemoscan.errors import HemoscanError, QuantizationError
from hemoscan.inference.backends import OnnxBackend
from hemoscan.model_export.quantize import (
    CALIBRATION_IMAGES,
    calibration_batch,
    method_of,
    quantize_export,
)
from hemoscan.models.loading import CARD_FILE, CONFIG_FILE, WEIGHTS_FILE, LoadedModel, sha256_file
from hemoscan.models.onnx_format import (
    INPUT_NAME,
    ONNX_FILE,
    ONNX_FORMAT,
    ONNX_SIDECAR,
    OUTPUT_NAMES,
    load_onnx_model,
)

#: Largest difference between an export's outputs and PyTorch's accepted by the export check.
EXPORT_ATOL = 1e-4


def _missing(package: str) -> HemoscanError:
    return HemoscanError(
        f"exporting to ONNX needs the {package!r} package: pip install 'hemoscan[onnx]'"
    )


def export_onnx(
    model: LoadedModel,
    path: Path,
    opset: int = 17,
    check: bool = True,
    quantize: str | None = None,
    calibration: Sequence[str] | None = None,
    calibration_images: int | None = None,
) -> Path:
    """Export ``model`` into the ONNX model folder ``path`` (created) and return ``path``.

    Writes ``model.onnx`` (dynamic batch, height and width), ``config.json`` (a copy of the
    model's), ``MODEL_CARD.md`` (a copy, where the source has one) and ``onnx.json`` last, so an
    interrupted export leaves no loadable folder. ``path`` may be the source model folder itself
    (it then serves both backends). With ``check``, the export is loaded back and its outputs on a
    random batch of another shape than the traced one must match PyTorch's within ``EXPORT_ATOL``.

    ``quantize="int8"``: then quantize the (checked) export statically, calibrated on the image
    tiles ``calibration`` (files, folders, globs, lists) or, without them, on generated example
    tiles; at most ``calibration_images`` images (default :data:`CALIBRATION_IMAGES`). The
    sidecar is absent while the graph is quantized, so a failed or interrupted quantization
    leaves no loadable folder. See :mod:`hemoscan.model_export.quantize`.
    """
    if quantize is None and (calibration or calibration_images is not None):
        raise QuantizationError("calibration tiles are only used with quantize='int8'")
    prepared = None
    if quantize is not None:  # prepared first: bad calibration sources fail before any writing
        method_of(quantize)
        prepared = calibration_batch(
            model.config, calibration, calibration_images or CALIBRATION_IMAGES
        )
    try:
        import onnx  # the optional `onnx` extra
    except ImportError:
        raise _missing("onnx") from None

    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise HemoscanError(f"{folder}: exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    same_folder = folder.resolve() == Path(model.folder).resolve()
    other_weights = folder / WEIGHTS_FILE
    if not same_folder and other_weights.is_file() and sha256_file(other_weights) != model.sha256:
        raise HemoscanError(
            f"{folder}: holds another model's weights ({WEIGHTS_FILE}); export into a new folder"
        )

    module = copy.deepcopy(model.module).cpu().eval()
    stride = int(module.stride)
    onnx_path = folder / ONNX_FILE
    tmp = folder / (ONNX_FILE + ".tmp")
    (folder / ONNX_SIDECAR).unlink(missing_ok=True)
    dummy = torch.zeros(1, 3, 128, 128)
    out_axes = {0: "batch", 2: "out_height", 3: "out_width"}
    try:
        with warnings.catch_warnings():
            # the classic TorchScript exporter warns that it is deprecated; the new (dynamo)
            # one needs the onnxscript package, which hemoscan does not depend on
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                module,
                (dummy,),
                str(tmp),
                input_names=[INPUT_NAME],
                output_names=list(OUTPUT_NAMES),
                dynamic_axes={
                    INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                    **{name: out_axes for name in OUTPUT_NAMES},
                },
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        onnx.checker.check_model(str(tmp))
    except Exception as e:
        tmp.unlink(missing_ok=True)
        raise HemoscanError(
            f"could not export {model.config.name} ({model.config.architecture}) to ONNX: {e}"
        ) from e
    os.replace(tmp, onnx_path)

    if not same_folder:
        model.config.write(folder / CONFIG_FILE)
        card = Path(model.folder) / CARD_FILE
        if card.is_file():
            shutil.copyfile(card, folder / CARD_FILE)
    sidecar = {
        "format": ONNX_FORMAT,
        "file": ONNX_FILE,
        "sha256": sha256_file(onnx_path),
        "source_weights_sha256": model.sha256,
        "opset": opset,
        "stride": stride,
    }
    (folder / ONNX_SIDECAR).write_text(json.dumps(sidecar, indent=2) + "\n")
    if check:
        _check_export(module, folder)
    if quantize is not None and prepared is not None:
        quantize_export(folder, prepared, quantize)
        load_onnx_model(str(folder), threads=1)  # the folder as scans will load it
    return folder


def _check_export(module: Any, folder: Path) -> None:
    """Outputs of the export equal PyTorch's within ``EXPORT_ATOL`` on a [2, 3, 96, 160] batch."""
    exported = load_onnx_model(str(folder), threads=1)
    batch = np.random.default_rng(0).standard_normal((2, 3, 96, 160)).astype(np.float32)
    with torch.inference_mode():
        expected = module(torch.from_numpy(batch))
    got = OnnxBackend(exported.session)(batch)
    for name, e, g in zip(OUTPUT_NAMES, expected, got):
        e = e.float().numpy()
        diff = float(np.abs(e - g).max()) if e.shape == g.shape else float("inf")
        if not diff <= EXPORT_ATOL:
            (folder / ONNX_SIDECAR).unlink(missing_ok=True)
            raise HemoscanError(
                f"the ONNX export of {exported.config.name} does not reproduce PyTorch's {name!r} "
                f"output (max abs difference {diff:.3g} > {EXPORT_ATOL:g}, shapes {tuple(e.shape)} "
                f"vs {tuple(g.shape)}); this architecture cannot use the ONNX backend"
            )
