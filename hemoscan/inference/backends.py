"""Where a :class:`~hemoscan.inference.predictor.Predictor` runs the network.

A backend is called with a normalised batch ``float32 [B, 3, H, W]`` (numpy) and returns the
CenterNet outputs ``(heatmap_logits, log_size, offset)`` as float32 numpy arrays.
``TorchBackend`` runs the PyTorch module (any device); ``OnnxBackend`` runs an ONNX export
(:mod:`hemoscan.models.onnx_format`) in onnxruntime on the CPU. Results of a full-precision
export agree with PyTorch's within 1e-4; an int8 export (:mod:`hemoscan.model_export.quantize`)
does not, and says so in its ``quantization``. :func:`resolve_backend` settles ``"auto"``;
:func:`model_for_backend` is the one way a model is obtained for a backend; the rest picks
hardware-dependent defaults.

torch is imported only where PyTorch runs: an ONNX scan on the CPU never loads it (importing
it was 1.1 s of the 1.9 s the plain `hemoscan scan` spent starting, measured).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, Union

import numpy as np

from hemoscan.choices import (
    AUTO_BACKEND,
    AUTO_PRECISION,
    BACKEND_CHOICES,
    BACKENDS,
    PRECISION_CHOICES,
)
from hemoscan.errors import HemoscanError, SettingsError
from hemoscan.hardware import cpu_cores, cuda_available, device_type
from hemoscan.models.loading import LoadedModel, load_model
from hemoscan.models.onnx_format import (
    INPUT_NAME,
    OUTPUT_NAMES,
    OnnxModel,
    has_onnx_export,
    load_onnx_model,
)

if TYPE_CHECKING:
    from torch import nn

Outputs = tuple[np.ndarray, np.ndarray, np.ndarray]
#: A model ready for a backend: PyTorch weights, or a verified ONNX export.
AnyModel = Union[LoadedModel, OnnxModel]


class Backend(Protocol):
    name: str

    def __call__(self, batch: np.ndarray) -> Outputs: ...


class TorchBackend:
    """The PyTorch module, in eval mode on ``device``."""

    name = "torch"

    def __init__(self, module: nn.Module, device: str = "cpu") -> None:
        import torch

        self.device = torch.device(device)
        self.module = module.to(self.device).eval()

    def __call__(self, batch: np.ndarray) -> Outputs:
        import torch

        with torch.inference_mode():
            outs = self.module(torch.from_numpy(batch).to(self.device))
        return tuple(o.float().cpu().numpy() for o in outs)  # type: ignore[return-value]


class OnnxBackend:
    """An ``onnxruntime.InferenceSession`` of an export (see
    :func:`~hemoscan.models.onnx_format.onnx_session`).

    ``quantization``: ``None`` for a full-precision export, else the export's quantization
    method (:attr:`~hemoscan.models.onnx_format.OnnxModel.quantization`), recorded by scans.
    """

    name = "onnx"

    def __init__(self, session: Any, quantization: str | None = None) -> None:
        self.session = session
        self.quantization = quantization

    def __call__(self, batch: np.ndarray) -> Outputs:
        feed = {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}
        outs = self.session.run(list(OUTPUT_NAMES), feed)
        heat, size, offset = (np.asarray(o, dtype=np.float32) for o in outs)
        return heat, size, offset


def check_backend(backend: str) -> None:
    """Raise :class:`~hemoscan.errors.SettingsError` unless ``backend`` is one of
    :data:`~hemoscan.choices.BACKEND_CHOICES`."""
    if backend not in BACKEND_CHOICES:
        raise SettingsError(
            f"unknown backend {backend!r}; choose from {', '.join(BACKEND_CHOICES)}"
        )


def check_precision(precision: str | None) -> None:
    """Raise :class:`~hemoscan.errors.SettingsError` unless ``precision`` is ``None`` or one of
    :data:`~hemoscan.choices.PRECISION_CHOICES`."""
    if precision is not None and precision not in PRECISION_CHOICES:
        raise SettingsError(
            f"unknown precision {precision!r}; choose from {', '.join(PRECISION_CHOICES)}"
        )


def resolve_device(device: str, backend: str = "torch") -> str:
    """``device`` itself, or for ``"auto"`` the first CUDA GPU when torch sees one and the
    backend can use it (torch, or ``"auto"``, which then picks torch; onnx runs on the CPU),
    else ``"cpu"``."""
    if device != "auto":
        return device
    return "cuda" if backend != "onnx" and cuda_available() else "cpu"


def resolve_backend(backend: str, model: str | AnyModel, device: str) -> str:
    """The backend that runs ``model`` on the resolved ``device``: ``backend`` itself, or for
    ``"auto"`` the kind of an already loaded model, and for a shipped name or model folder
    ``"onnx"`` when ``device`` is the CPU and the folder holds an ONNX export (shipped models
    carry theirs), else ``"torch"`` (a GPU, or a folder without an export)."""
    check_backend(backend)
    if backend != AUTO_BACKEND:
        return backend
    if not isinstance(model, str):
        return "onnx" if isinstance(model, OnnxModel) else "torch"
    return "onnx" if device_type(device) == "cpu" and has_onnx_export(model) else "torch"


def default_batch_size(device: str) -> int:
    """Tiles per forward pass when not given: 1 on the CPU, where larger batches were slower per
    tile (``benchmarks/scan_throughput.py``: 2.9 vs 8.2 tiles/s at 512 px, batch 8 vs 1, 2 cores),
    and 8 on a GPU, which needs batches to be kept busy."""
    return 1 if device_type(device) == "cpu" else 8


def default_streams(backend: str, device: str) -> int:
    """Concurrent inference streams when not given: one per core for onnxruntime on the CPU,
    each with one intra-op thread, so decoding, post-processing and the next tile's network
    overlap (on 2 cores, an int8 scan of 96 512 px tiles: 30.8 tiles/s with 2 streams, 20.9
    with 1); else 1 (PyTorch's threads are process-wide, a GPU queues its work itself)."""
    return cpu_cores() if backend == "onnx" and device_type(device) == "cpu" else 1


def model_for_backend(
    model: str | AnyModel,
    backend: str = "torch",
    threads: int | None = None,
    precision: str | None = None,
) -> AnyModel:
    """The model ``backend`` runs, from a shipped model name, a model folder or a loaded model.

    ``"torch"`` runs a :class:`~hemoscan.models.loading.LoadedModel`, in float32 (``precision``
    ``None``, ``"auto"`` or ``"fp32"``). ``"onnx"`` runs an
    :class:`~hemoscan.models.onnx_format.OnnxModel`: a name or folder is loaded as its ONNX
    export of ``precision`` (see :func:`~hemoscan.models.onnx_format.load_onnx_model`), and a
    ``LoadedModel`` is replaced by that export of its folder, which must be of the same
    weights. ``threads``: onnxruntime intra-op threads of an export loaded here. A model already
    of the right kind is returned as it is.
    """
    if backend not in BACKENDS:
        raise SettingsError(
            f"backend {backend!r} is not resolved; choose from {', '.join(BACKENDS)}"
        )
    check_precision(precision)
    if backend == "torch" and precision not in (None, AUTO_PRECISION, "fp32"):
        raise SettingsError(
            f"precision {precision!r} runs in onnxruntime on the CPU: use --backend onnx (or "
            "auto, on the CPU)"
        )
    if isinstance(model, str):
        return load_onnx_model(model, threads, precision) if backend == "onnx" else load_model(model)
    if backend == "torch":
        if not isinstance(model, LoadedModel):
            raise SettingsError(
                f"{model.folder}: an ONNX export runs with backend 'onnx'; for 'torch' load the "
                "source model folder (model.safetensors)"
            )
        return model
    if isinstance(model, LoadedModel):
        exported = load_onnx_model(str(model.folder), threads, precision)
        if exported.sha256 != model.sha256:
            raise HemoscanError(
                f"{model.folder}: its ONNX export was made from other weights; export again "
                f"(hemoscan export {model.folder} --format onnx --out {model.folder})"
            )
        return exported
    return model


def create_backend(model: AnyModel, device: str = "cpu") -> tuple[Backend, int]:
    """The backend that runs ``model`` (see :func:`model_for_backend`) and its output stride.

    An ONNX export runs on the CPU only."""
    if isinstance(model, LoadedModel):
        return TorchBackend(model.module, device), int(model.module.stride)
    if device_type(device) != "cpu":
        raise SettingsError(f"the onnx backend runs on the CPU only (got device {device!r})")
    return OnnxBackend(model.session, model.quantization), int(model.stride)
