"""The ONNX model folder: its files, its sidecar, and loading it safely into onnxruntime.

An ONNX model folder holds ``model.onnx``, a copy of the source model's ``config.json``
(classes, normalisation, thresholds, tiling: unchanged) and an ``onnx.json`` sidecar::

    {"format": "hemoscan-onnx/1", "file": "model.onnx", "sha256": "<the onnx file's sha256>",
     "source_weights_sha256": "<sha256 of the model.safetensors it was exported from>",
     "opset": 17, "stride": 8}

The ONNX graph follows the output contract of :mod:`hemoscan.models.centernet`: input
``image`` float32 ``[B, 3, H, W]`` (batch, height and width dynamic), outputs ``heatmap``,
``log_size`` and ``offset``. Loading checks the onnx file's sha256 against the sidecar before
onnxruntime sees it, as :func:`~hemoscan.models.loading.load_model` checks safetensors weights;
for a shipped model, also against the ``onnx_sha256`` of its manifest entry
(:func:`manifest_fields`), so a shipped export is as pinned as its weights.

A shipped model folder may hold its own export beside its weights (one folder, both
backends): ``--backend auto`` then runs it on the CPU (:func:`has_onnx_export`).

An INT8 export holds the quantized graph as ``model.onnx`` and adds a ``"quantization"``
record to the sidecar (see :mod:`hemoscan.model_export.quantize`);
:attr:`OnnxModel.quantization` is then its method (one of :data:`METHODS`' values), and
``None`` for a full-precision export. A model folder may carry an INT8 export of its own
weights beside its float32 one, as the complete export folder :data:`INT8_FOLDER` inside it
(shipped models pin its onnx file as ``int8_onnx_sha256``); ``precision="int8"`` runs it
(:func:`load_onnx_model`).

This module reads the format; :mod:`hemoscan.model_export` writes it and
:class:`hemoscan.inference.backends.OnnxBackend` runs it; ``onnxruntime`` is a core dependency.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnxruntime as ort

from hemoscan.choices import PRECISION_CHOICES, QUANTIZATIONS
from hemoscan.errors import HemoscanError, ModelConfigError, WeightsIntegrityError
from hemoscan.hardware import cpu_cores, cpu_has_vnni
from hemoscan.models.config import ModelConfig
from hemoscan.models.loading import (
    CONFIG_FILE,
    INT8_ONNX_PIN,
    ONNX_PIN,
    read_manifest,
    read_model_config,
    resolve_model_folder,
    sha256_file,
    weights_dir,
)

log = logging.getLogger(__name__)

ONNX_FILE = "model.onnx"
ONNX_SIDECAR = "onnx.json"
#: The folder inside a model folder that holds the int8 export of its weights.
INT8_FOLDER = "int8"
ONNX_FORMAT = "hemoscan-onnx/1"
INPUT_NAME = "image"
OUTPUT_NAMES = ("heatmap", "log_size", "offset")
#: Each ``--quantize`` value (:data:`~hemoscan.choices.QUANTIZATIONS`) and the method its export
#: records in the sidecar and scans record in their settings.
METHODS: dict[str, str] = dict(zip(QUANTIZATIONS, ("int8-static-qdq",), strict=True))


@dataclass(frozen=True)
class OnnxModel:
    """A verified ONNX export ready for :class:`~hemoscan.inference.backends.OnnxBackend`.

    ``sha256`` is the sha256 of the source weights (``model.safetensors``): the model's identity,
    as recorded in scan provenance whichever backend runs it. ``onnx_sha256`` is the verified
    sha256 of the onnx file itself. ``session`` is an ``onnxruntime.InferenceSession``.
    ``quantization``: ``None`` for a full-precision export, else the quantization method
    (``"int8-static-qdq"``); ``quantization_record`` is then the sidecar's whole record
    (calibration, measured differences to float32, see :mod:`hemoscan.model_export.quantize`).
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


def has_onnx_export(name_or_path: str) -> bool:
    """Whether the shipped model or model folder ``name_or_path`` holds an ONNX export (its
    sidecar; the export itself is verified when loaded)."""
    folder, _ = resolve_model_folder(name_or_path)
    return (folder / ONNX_SIDECAR).is_file()


def manifest_fields(folder: Path) -> dict[str, str]:
    """What a shipped model's manifest entry records of the exports in ``folder``:
    ``{"onnx_sha256": ..., "int8_onnx_sha256": ...}`` for those it holds."""
    fields = {}
    for key, export in ((ONNX_PIN, folder), (INT8_ONNX_PIN, folder / INT8_FOLDER)):
        if (export / ONNX_SIDECAR).is_file():
            fields[key] = sha256_file(export / read_sidecar(export, str(export))["file"])
    return fields


def onnx_session(model: bytes | str | Path, threads: int | None = None) -> Any:
    """A CPU ``InferenceSession`` with every graph optimisation and ``threads`` intra-op
    threads (default: every core this process may use)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or cpu_cores()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def read_sidecar(folder: Path, name_or_path: str) -> dict[str, Any]:
    """The validated ``onnx.json`` of ``folder`` (``name_or_path``: how the user named it).

    Raises :class:`~hemoscan.errors.ModelConfigError` when the folder holds no export or its
    sidecar is invalid."""
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


def load_onnx_model(
    name_or_path: str, threads: int | None = None, precision: str | None = None
) -> OnnxModel:
    """Load the ONNX export in a model folder (or shipped model), checking its sha256 first.

    ``precision``: ``None`` or ``"auto"``, the folder's own export; ``"fp32"``, the same, which
    must then be full precision; ``"int8"``, the int8 export it carries (:data:`INT8_FOLDER`),
    or its own export where that is int8.
    The onnx file is read once, hashed, and the same bytes are given to onnxruntime, so a file
    replaced after the check is never run. ``threads``: onnxruntime intra-op threads (default:
    every core). Raises :class:`~hemoscan.errors.WeightsIntegrityError` for a missing,
    corrupted or replaced onnx file and :class:`~hemoscan.errors.ModelConfigError` for a folder
    without an export, or without one of the asked precision.
    """
    if precision is not None and precision not in PRECISION_CHOICES:
        raise ModelConfigError(
            f"unknown precision {precision!r}; choose from {', '.join(PRECISION_CHOICES)}"
        )
    folder, expected_source = resolve_model_folder(name_or_path)
    pinned = ONNX_PIN
    if precision == "int8" and (folder / INT8_FOLDER / ONNX_SIDECAR).is_file():
        folder, pinned = folder / INT8_FOLDER, INT8_ONNX_PIN
    model = _load_export(folder, name_or_path, expected_source, pinned, threads)
    if precision == "fp32" and model.quantization:
        raise ModelConfigError(
            f"{folder}: its ONNX export is quantized ({model.quantization}), not float32; scan "
            "it with --precision int8 (or auto), or export the model again without --quantize"
        )
    record = model.quantization_record or {}
    if "VNNI" in str(record.get("weights", "")) and not cpu_has_vnni():
        log.warning(
            "%s: this int8 export has full 8-bit weights and was measured on a CPU with VNNI; "
            "this CPU has none, and onnxruntime's int8 arithmetic here may saturate: check its "
            "accuracy on your data (hemoscan evaluate --backend onnx --precision int8) or scan "
            "in float32", folder,
        )  # fmt: skip
    if precision == "int8" and not model.quantization:
        carrying = sorted(name for name, entry in read_manifest().items() if INT8_ONNX_PIN in entry)
        raise ModelConfigError(
            f"{folder}: holds no int8 export; make one with hemoscan export {name_or_path} "
            "--format onnx --quantize int8 --out INT8_FOLDER and scan with --model INT8_FOLDER"
            + (f", or scan with a shipped model that carries one (--model {' | '.join(carrying)})"
               if carrying else "")
        )  # fmt: skip
    return model


def _load_export(
    folder: Path, name_or_path: str, expected_source: str | None, pinned: str,
    threads: int | None,
) -> OnnxModel:  # fmt: skip
    """The verified export in ``folder``; ``pinned``: the manifest key that pins its onnx file
    where ``name_or_path`` names a shipped model."""
    config, config_sha256 = read_model_config(folder, name_or_path)
    sidecar = read_sidecar(folder, name_or_path)
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
    entry = read_manifest().get(name_or_path)
    if entry is not None and entry.get(pinned) != actual:
        raise WeightsIntegrityError(
            f"{onnx_path}: sha256 {actual[:16]}... is not the "
            f"{str(entry.get(pinned) or 'none')[:16]}... that {weights_dir() / 'manifest.json'} "
            f"records for the shipped model {name_or_path!r}; the export was changed or replaced. "
            "Restore it, or export a copy of the folder and scan with --model FOLDER."
        )
    source = sidecar["source_weights_sha256"]
    references = ((expected_source, "the manifest"), (config.weights_sha256, CONFIG_FILE))
    for reference, where in references:
        if reference and reference != source:
            raise WeightsIntegrityError(
                f"{folder / ONNX_SIDECAR}: exported from weights {source[:16]}..., but {where} "
                f"expects {reference[:16]}...; the export is stale or was replaced: export again"
            )
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
