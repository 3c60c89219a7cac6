"""Export a verified model to ONNX for the fast CPU path, and load such an export safely.

An ONNX model folder holds ``model.onnx``, a copy of the source model's ``config.json``
(classes, normalisation, thresholds, tiling: unchanged) and an ``onnx.json`` sidecar::

    {"format": "hemoscan-onnx/1", "file": "model.onnx", "sha256": "<the onnx file's sha256>",
     "source_weights_sha256": "<sha256 of the model.safetensors it was exported from>",
     "opset": 17, "stride": 8}

The ONNX graph follows the output contract of :mod:`hemoscan.models.centernet`: input
``image`` float32 ``[B, 3, H, W]`` (batch, height and width dynamic), outputs ``heatmap``,
``log_size`` and ``offset``. Loading checks the onnx file's sha256 against the sidecar before
onnxruntime sees it, as :func:`~hemoscan.models.loading.load_model` checks safetensors weights.

An INT8 export (``quantize="int8"``, see :mod:`hemoscan.models.quantize`) holds the quantized
graph as ``model.onnx`` (the full-precision one is not kept) and adds a ``"quantization"`` record
to the sidecar; :attr:`OnnxModel.quantization` is then its method (``"int8-static-qdq"``), and
``None`` for a full-precision export.

``onnx`` and ``onnxruntime`` are optional (``pip install 'hemoscan[onnx]'``) and imported only
when exporting or loading.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hemoscan.errors import (
    HemoscanError,
    ModelConfigError,
    QuantizationError,
    WeightsIntegrityError,
)
from hemoscan.models.config import ModelConfig
from hemoscan.models.loading import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    LoadedModel,
    read_model_config,
    resolve_model_folder,
    sha256_file,
)

ONNX_FILE = "model.onnx"
ONNX_SIDECAR = "onnx.json"
ONNX_FORMAT = "hemoscan-onnx/1"
INPUT_NAME = "image"
OUTPUT_NAMES = ("heatmap", "log_size", "offset")
CARD_FILE = "MODEL_CARD.md"
# Largest difference between an export's outputs and PyTorch's accepted by the export check.
EXPORT_ATOL = 1e-4


@dataclass(frozen=True)
class OnnxModel:
    """A verified ONNX export ready for :class:`~hemoscan.inference.backends.OnnxBackend`.

    ``sha256`` is the sha256 of the source weights (``model.safetensors``): the model's identity,
    as recorded in scan provenance whichever backend runs it. ``onnx_sha256`` is the verified
    sha256 of the onnx file itself. ``session`` is an ``onnxruntime.InferenceSession``.
    ``quantization``: ``None`` for a full-precision export, else the quantization method
    (``"int8-static-qdq"``); ``quantization_record`` is then the sidecar's whole record
    (calibration, measured differences to float32, see :mod:`hemoscan.models.quantize`).
    ``config_sha256`` is the sha256 of the folder's ``config.json``.
    """

    config: ModelConfig
    session: Any
    sha256: str
    onnx_sha256: str
    stride: int
    opset: int
    folder: Path
    quantization: str | None = None
    quantization_record: dict[str, Any] | None = field(default=None, compare=False)
    config_sha256: str = ""


def _missing(package: str) -> HemoscanError:
    return HemoscanError(
        f"the ONNX backend needs the {package!r} package: pip install 'hemoscan[onnx]'"
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
    tiles; at most ``calibration_images`` images (default
    :data:`~hemoscan.models.quantize.CALIBRATION_IMAGES`). The sidecar is absent while the graph
    is quantized, so a failed or interrupted quantization leaves no loadable folder. See
    :mod:`hemoscan.models.quantize`.
    """
    if quantize is None and (calibration or calibration_images is not None):
        raise QuantizationError("calibration tiles are only used with quantize='int8'")
    calibration_batch = None
    if quantize is not None:  # prepared first: bad calibration sources fail before any writing
        from hemoscan.models import quantize as q

        q.method_of(quantize)
        calibration_batch = q.calibration_batch(
            model.config, calibration, calibration_images or q.CALIBRATION_IMAGES
        )
    import torch

    try:
        import onnx
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
    if calibration_batch is not None:
        from hemoscan.models.quantize import quantize_export

        quantize_export(folder, calibration_batch, quantize or "int8")
        load_onnx_model(str(folder), threads=1)  # the folder as scans will load it
    return folder


def _check_export(module: Any, folder: Path) -> None:
    """Outputs of the export equal PyTorch's within ``EXPORT_ATOL`` on a [2, 3, 96, 160] batch."""
    import numpy as np
    import torch

    from hemoscan.inference.backends import OnnxBackend

    exported = load_onnx_model(str(folder), threads=1)
    batch = np.random.default_rng(0).standard_normal((2, 3, 96, 160)).astype(np.float32)
    with torch.inference_mode():
        expected = module(torch.from_numpy(batch))
    got = OnnxBackend(exported.session)(batch)
    for name, e, g in zip(OUTPUT_NAMES, expected, got):
        diff = float((e.float() - g).abs().max()) if e.shape == g.shape else float("inf")
        if not diff <= EXPORT_ATOL:
            (folder / ONNX_SIDECAR).unlink(missing_ok=True)
            raise HemoscanError(
                f"the ONNX export of {exported.config.name} does not reproduce PyTorch's {name!r} "
                f"output (max abs difference {diff:.3g} > {EXPORT_ATOL:g}, shapes {tuple(e.shape)} "
                f"vs {tuple(g.shape)}); this architecture cannot use the ONNX backend"
            )


def _read_sidecar(folder: Path, name_or_path: str) -> dict[str, Any]:
    path = folder / ONNX_SIDECAR
    if not path.is_file():
        raise ModelConfigError(
            f"{folder}: no ONNX export in this model folder ({ONNX_SIDECAR} not found). Export it "
            f"first: hemoscan export {name_or_path} --format onnx --out ONNX_FOLDER, then scan "
            "with --model ONNX_FOLDER --backend onnx"
        )
    try:
        sidecar = json.loads(path.read_text())
        if sidecar.get("format") != ONNX_FORMAT:
            raise ValueError(f"format {sidecar.get('format')!r} is not {ONNX_FORMAT!r}")
        file = sidecar["file"]
        if not isinstance(file, str) or Path(file).name != file or file in ("", ".", ".."):
            raise ValueError(f"file {file!r} is not a file name inside the folder")
        for key in ("sha256", "source_weights_sha256"):
            if not isinstance(sidecar[key], str) or len(sidecar[key]) != 64:
                raise ValueError(f"{key} is not a sha256")
        sidecar["stride"] = int(sidecar["stride"])
        sidecar["opset"] = int(sidecar["opset"])
        quantization = sidecar.get("quantization")
        if quantization is not None:
            from hemoscan.models.quantize import METHODS

            if not isinstance(quantization, dict):
                raise ValueError("quantization is not a record")
            if quantization.get("method") not in METHODS.values():
                raise ValueError(
                    f"quantization method {quantization.get('method')!r} is not one this "
                    f"hemoscan runs ({', '.join(METHODS.values())})"
                )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise ModelConfigError(f"{path}: invalid ONNX sidecar: {e!r}") from None
    return sidecar


def load_onnx_model(name_or_path: str, threads: int | None = None) -> OnnxModel:
    """Load the ONNX export in a model folder (or shipped model), checking its sha256 first.

    The onnx file is read once, hashed, and the same bytes are given to onnxruntime, so a file
    replaced after the check is never run. ``threads``: onnxruntime intra-op threads (default:
    torch's thread count). Raises :class:`~hemoscan.errors.WeightsIntegrityError` for a missing,
    corrupted or replaced onnx file and :class:`~hemoscan.errors.ModelConfigError` for a folder
    without an export.
    """
    folder, expected_source = resolve_model_folder(name_or_path)
    config, config_sha256 = read_model_config(folder, name_or_path)
    sidecar = _read_sidecar(folder, name_or_path)
    onnx_path = folder / sidecar["file"]
    if not onnx_path.is_file():
        raise WeightsIntegrityError(f"{onnx_path}: ONNX file not found")
    data = onnx_path.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != sidecar["sha256"]:
        raise WeightsIntegrityError(
            f"{onnx_path}: sha256 {actual[:16]}... does not match the expected "
            f"{sidecar['sha256'][:16]}... in {ONNX_SIDECAR}; the file is corrupted or was "
            "replaced. Restore it, or export the model again (hemoscan export)."
        )
    source = sidecar["source_weights_sha256"]
    references = ((expected_source, "the manifest"), (config.weights_sha256, CONFIG_FILE))
    for reference, where in references:
        if reference and reference != source:
            raise WeightsIntegrityError(
                f"{folder / ONNX_SIDECAR}: exported from weights {source[:16]}..., but {where} "
                f"expects {reference[:16]}...; the export is stale or was replaced: export again"
            )
    from hemoscan.inference.backends import onnx_session

    try:
        session = onnx_session(data, threads)
    except HemoscanError:
        raise
    except Exception as e:  # noqa: BLE001 - onnxruntime raises its own exception types
        raise WeightsIntegrityError(f"{onnx_path}: onnxruntime cannot load it: {e}") from None
    inputs = [i.name for i in session.get_inputs()]
    outputs = [o.name for o in session.get_outputs()]
    if inputs != [INPUT_NAME] or outputs != list(OUTPUT_NAMES):
        raise WeightsIntegrityError(
            f"{onnx_path}: inputs {inputs} / outputs {outputs} do not follow the hemoscan contract "
            f"([{INPUT_NAME!r}] / {list(OUTPUT_NAMES)})"
        )
    record = sidecar.get("quantization")
    return OnnxModel(
        config=config,
        session=session,
        sha256=source,
        onnx_sha256=actual,
        stride=sidecar["stride"],
        opset=sidecar["opset"],
        folder=folder,
        quantization=record["method"] if record else None,
        quantization_record=record,
        config_sha256=config_sha256,
    )
