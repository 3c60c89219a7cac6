"""Where a :class:`~hemoscan.inference.predictor.Predictor` runs the network.

A backend is called with a normalised batch ``float32 [B, 3, H, W]`` (numpy) and returns the
CenterNet outputs ``(heatmap_logits, log_size, offset)`` as CPU float32 torch tensors.
``TorchBackend`` runs the PyTorch module (any device); ``OnnxBackend`` runs an ONNX export
(:mod:`hemoscan.models.export`) in onnxruntime on the CPU. Results of a full-precision export
agree with PyTorch's within 1e-4; an int8 export (:mod:`hemoscan.models.quantize`) does not, and
says so in its ``quantization``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Protocol, Union

import numpy as np
import torch
from torch import nn

from hemoscan.errors import HemoscanError
from hemoscan.models.export import INPUT_NAME, OUTPUT_NAMES, OnnxModel, load_onnx_model
from hemoscan.models.loading import LoadedModel

BACKENDS = ("torch", "onnx")

Outputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


class Backend(Protocol):
    name: str

    def __call__(self, batch: np.ndarray) -> Outputs: ...


class TorchBackend:
    """The PyTorch module, in eval mode on ``device``."""

    name = "torch"

    def __init__(self, module: nn.Module, device: str | torch.device = "cpu") -> None:
        self.device = torch.device(device)
        self.module = module.to(self.device).eval()

    def __call__(self, batch: np.ndarray) -> Outputs:
        with torch.inference_mode():
            outs = self.module(torch.from_numpy(batch).to(self.device))
        return tuple(o.float().cpu() for o in outs)  # type: ignore[return-value]


class OnnxBackend:
    """An ``onnxruntime.InferenceSession`` of an export (see :func:`onnx_session`).

    ``quantization``: ``None`` for a full-precision export, else the export's quantization
    method (:attr:`~hemoscan.models.export.OnnxModel.quantization`), recorded by scans.
    """

    name = "onnx"

    def __init__(self, session: Any, quantization: str | None = None) -> None:
        self.session = session
        self.quantization = quantization

    def __call__(self, batch: np.ndarray) -> Outputs:
        feed = {INPUT_NAME: np.ascontiguousarray(batch, dtype=np.float32)}
        outs = self.session.run(list(OUTPUT_NAMES), feed)
        heat, size, offset = (torch.from_numpy(np.asarray(o, dtype=np.float32)) for o in outs)
        return heat, size, offset


def resolve_device(device: str, backend: str = "torch") -> str:
    """``device`` itself, or for ``"auto"`` the first CUDA GPU when torch sees one and the
    backend can use it (onnx runs on the CPU), else ``"cpu"``."""
    if device != "auto":
        return device
    return "cuda" if backend == "torch" and torch.cuda.is_available() else "cpu"


def default_batch_size(device: str) -> int:
    """Tiles per forward pass when not given: 1 on the CPU, where larger batches were slower per
    tile (``benchmarks/scan_throughput.py``: 2.9 vs 8.2 tiles/s at 512 px, batch 8 vs 1, 2 cores),
    and 8 on a GPU, which needs batches to be kept busy."""
    return 1 if torch.device(device).type == "cpu" else 8


def cpu_cores() -> int:
    """CPU cores this process may run on (its affinity mask, else the machine's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def default_streams(backend: str, device: str) -> int:
    """Concurrent inference streams when not given: one per core for onnxruntime on the CPU,
    each with one intra-op thread, so decoding, post-processing and the next tile's network
    overlap (on 2 cores, an int8 scan of 96 512 px tiles: 30.8 tiles/s with 2 streams, 20.9
    with 1); else 1 (PyTorch's threads are process-wide, a GPU queues its work itself)."""
    return cpu_cores() if backend == "onnx" and torch.device(device).type == "cpu" else 1


def onnx_session(model: bytes | str | Path, threads: int | None = None) -> Any:
    """A CPU ``InferenceSession`` with every graph optimisation and ``threads`` intra-op
    threads (default: torch's thread count, so both backends use the same cores)."""
    try:
        import onnxruntime as ort
    except ImportError:
        raise HemoscanError(
            "the ONNX backend needs the 'onnxruntime' package: pip install 'hemoscan[onnx]'"
        ) from None
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    source = str(model) if isinstance(model, Path) else model
    return ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])


def create_backend(
    model: Union[LoadedModel, OnnxModel], backend: str = "torch", device: str = "cpu"
) -> tuple[Backend, int]:
    """The backend ``backend`` for ``model`` and the model's output stride.

    ``"onnx"`` takes an :class:`OnnxModel`, or a :class:`LoadedModel` whose folder also holds
    an export of the same weights; it runs on the CPU only.
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose from {', '.join(BACKENDS)}")
    if backend == "torch":
        if not isinstance(model, LoadedModel):
            raise ValueError(
                f"{model.folder}: an ONNX export runs with backend 'onnx'; for 'torch' load the "
                "source model folder (model.safetensors)"
            )
        return TorchBackend(model.module, device), int(model.module.stride)
    if torch.device(device).type != "cpu":
        raise ValueError(f"the onnx backend runs on the CPU only (got device {device!r})")
    if isinstance(model, LoadedModel):
        exported = load_onnx_model(str(model.folder))
        if exported.sha256 != model.sha256:
            raise HemoscanError(
                f"{model.folder}: its ONNX export was made from other weights; export again "
                f"(hemoscan export {model.folder} --format onnx --out {model.folder})"
            )
        model = exported
    return OnnxBackend(model.session, model.quantization), int(model.stride)
