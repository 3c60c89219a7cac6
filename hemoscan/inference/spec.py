"""A predictor's settings, resolved once: :func:`resolve_predictor` -> :class:`PredictorSpec`.

As timm's ``resolve_data_config`` merges a model's pretrained config with the user's
arguments, :func:`resolve_predictor` merges the model config (tiling, thresholds), the
user's settings (``None``: the model's or the hardware's value) and the device into one
frozen :class:`PredictorSpec`. Every default is filled and every rule checked here, nowhere
else: the spec builds the :class:`~hemoscan.inference.predictor.Predictor`, is what a scan
records (``run.json``, provenance), and is what a Dask worker receives to build the same
predictor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from hemoscan.errors import SettingsError
from hemoscan.inference.backends import (
    AnyModel,
    default_batch_size,
    model_for_backend,
    resolve_backend,
    resolve_device,
)
from hemoscan.inference.scale import parse_scale
from hemoscan.models.config import check_tiling


@dataclass(frozen=True)
class PredictorSpec:
    """What decides a predictor's detections, every value resolved (small, picklable).

    The model: ``model_name``/``model_version`` from its config, ``model_folder`` (absolute),
    the sha256 of its weights (``model_sha256``: its identity whichever backend runs it) and
    of its ``config.json`` (``config_sha256``; empty for a model built in memory), the sha256
    of the ONNX file that runs (``onnx_sha256``; ``None`` with torch) and the
    ``quantization`` method of an int8 ONNX export (``None``: full precision).
    The run: ``backend`` (``"torch"``/``"onnx"``), ``device`` (never ``"auto"``),
    ``batch_size`` windows per forward pass, ``tile_size``/``overlap`` (pixels of the rescaled
    image, multiples of 32), ``scale`` (a positive factor or ``"auto"``) and the per-class
    score ``thresholds`` in the config's class order.
    """

    model_name: str
    model_version: str
    model_folder: str
    model_sha256: str
    config_sha256: str
    onnx_sha256: str | None
    quantization: str | None
    backend: str
    device: str
    batch_size: int
    tile_size: int
    overlap: int
    scale: float | str
    thresholds: tuple[tuple[str, float], ...]

    @property
    def precision(self) -> str:
        """The arithmetic the network runs in: ``"int8"`` for a quantized export, else
        ``"fp32"``."""
        return "int8" if self.quantization else "fp32"

    @property
    def given_scale(self) -> float:
        """The factor every image is resized by unless scaled otherwise: ``scale``, or 1 when
        it is ``"auto"`` (each image then gets its own)."""
        return self.scale if isinstance(self.scale, float) else 1.0

    def tiling(self) -> dict[str, int | float | str]:
        """``tile_size``, ``overlap`` and ``scale``, as scans record them."""
        return {"tile_size": self.tile_size, "overlap": self.overlap, "scale": self.scale}

    def mismatch(self, model: AnyModel) -> str | None:
        """What makes ``model`` another model than the one this spec was resolved for (weights,
        config, ONNX file or quantization), or ``None`` when it is the same."""
        if model.sha256 != self.model_sha256:
            return (f"{model.folder} holds weights {model.sha256[:16]}..., not the "
                    f"{self.model_sha256[:16]}... of the spec")  # fmt: skip
        if model.config_sha256 != self.config_sha256:
            return (f"{model.folder} holds another config.json (sha256 "
                    f"{model.config_sha256[:16]}...) than the spec's")  # fmt: skip
        onnx_sha256 = getattr(model, "onnx_sha256", None)
        if onnx_sha256 != self.onnx_sha256:
            return (f"{model.folder} holds another ONNX file (sha256 {str(onnx_sha256)[:16]}...) "
                    "than the spec's")  # fmt: skip
        quantization = getattr(model, "quantization", None)
        if quantization != self.quantization:
            return (f"{model.folder} holds an export quantized as {quantization!r}, not "
                    f"{self.quantization!r} as the spec's")  # fmt: skip
        return None


def resolve_predictor(
    model: str | AnyModel,
    *,
    backend: str = "auto",
    device: str = "auto",
    batch_size: int | None = None,
    conf: float | None = None,
    tile_size: int | None = None,
    overlap: int | None = None,
    scale: float | str = 1.0,
    threads: int | None = None,
    precision: str | None = None,
) -> tuple[PredictorSpec, AnyModel]:
    """The resolved spec of a predictor and the model its backend runs.

    ``model``: a shipped model name, a model folder or a loaded model (see
    :func:`~hemoscan.inference.backends.model_for_backend`; ``threads``: onnxruntime threads
    of an export loaded here). ``device="auto"``: a GPU when torch sees one and the backend
    can use it. ``batch_size=None`` (or 0): 1 on the CPU, 8 on a GPU. ``conf`` overrides every
    class's tuned threshold. ``tile_size``/``overlap``: the model config's when ``None``.
    ``scale``: a factor (``1.0``: as given) or ``"auto"``. ``backend="auto"`` (the default): a
    loaded model's own kind; for a name or folder, its ONNX export on the CPU where it has one,
    else torch (:func:`~hemoscan.inference.backends.resolve_backend`). ``precision``: which
    ONNX export of a name or folder runs (:func:`~hemoscan.models.onnx_format.load_onnx_model`;
    ``None`` or ``"auto"``: its own).

    Raises :class:`~hemoscan.errors.SettingsError` (a ``ValueError``) for a setting out of
    range, and the model loaders' errors for a model that cannot be loaded.
    """
    device = resolve_device(device, backend)
    backend = resolve_backend(backend, model, device)
    model = model_for_backend(model, backend, threads, precision)
    config = model.config
    tile_size = tile_size or config.tile_size
    overlap = config.overlap if overlap is None else overlap
    try:
        check_tiling(tile_size, overlap)
        scale = parse_scale(scale)
    except ValueError as e:
        raise SettingsError(str(e)) from None
    spec = PredictorSpec(
        model_name=config.name,
        model_version=config.version,
        model_folder=os.path.abspath(model.folder),
        model_sha256=model.sha256,
        config_sha256=model.config_sha256,
        onnx_sha256=getattr(model, "onnx_sha256", None),
        quantization=getattr(model, "quantization", None),
        backend=backend,
        device=device,
        batch_size=max(1, batch_size or default_batch_size(device)),
        tile_size=tile_size,
        overlap=overlap,
        scale=scale,
        thresholds=tuple((c, config.threshold(c) if conf is None else conf) for c in config.classes),
    )
    return spec, model
