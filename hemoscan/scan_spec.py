"""A scan's settings: the user's :class:`ScanOptions`, resolved once into a :class:`ScanSpec`.

:func:`resolve_scan` checks the options against :mod:`hemoscan.choices`, resolves the device
and the number of inference streams, obtains the model the backend runs (one route, see
:func:`~hemoscan.inference.backends.model_for_backend`) and resolves the predictor's spec
(:func:`~hemoscan.inference.spec.resolve_predictor`). Everything downstream reads resolved
values from the spec: the predictor, the engines (a Dask worker receives
:attr:`ScanSpec.predictor`), ``run.json`` (:meth:`ScanSpec.run_settings`) and the provenance
of ``summary.json`` (:meth:`ScanSpec.provenance_settings`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hemoscan.choices import AUTO_PRECISION, ENGINES, RESULT_FORMATS
from hemoscan.errors import SettingsError
from hemoscan.inference.backends import (
    AnyModel,
    check_backend,
    check_precision,
    cpu_cores,
    default_streams,
    resolve_backend,
    resolve_device,
)
from hemoscan.inference.spec import PredictorSpec, resolve_predictor
from hemoscan.io.scan_files import RUN, read_run
from hemoscan.models.loading import DEFAULT_MODEL, resolve_model_folder
from hemoscan.qc import QCThresholds


@dataclass(frozen=True)
class ScanOptions:
    """Settings of a scan, as the user gives them; ``None`` means the model config's value.

    ``backend``: ``"auto"`` (the model's ONNX export in onnxruntime on the CPU where its folder
    holds one, as shipped models do; else, and on a GPU, torch), ``"torch"`` or ``"onnx"``
    (``model`` must then name a folder holding an ONNX export, see ``hemoscan export``). Torch
    and a full-precision export give the same detections
    within 1e-4, so a scan may be resumed with the other backend; an int8 export
    (``hemoscan export --quantize int8``) does not, so its scans record ``quantization`` in
    their settings and provenance, and resuming across a change of it is refused.

    ``precision``: which ONNX export runs: ``"auto"`` (the model folder's own export, float32
    for the shipped models; a scan being resumed keeps the precision it was started with, see
    :func:`resolve_scan`), ``"fp32"`` or ``"int8"`` (the int8 export a shipped model carries;
    see :func:`~hemoscan.models.onnx_format.load_onnx_model`). PyTorch runs float32 only.

    ``engine``: ``"local"`` (this process) or ``"dask"``: the tiles are shared out over the
    workers of the Dask cluster at ``scheduler`` (a local cluster of ``workers`` processes
    when ``None``), see :mod:`hemoscan.engines.dask_engine`. Both engines write the same
    outputs, so a scan may be resumed with the other engine.

    ``mpp``: µm per pixel of whole-slide images whose metadata gives none (see
    :mod:`hemoscan.inference.slide_plan`); slides with their own pixel size ignore it.

    ``scale``: ``"auto"`` (each tile's own estimate, and its sample's consensus for tiles too
    poor in cells to measure: :mod:`hemoscan.inference.scale`) or a factor for every tile.
    Whole-slide images are brought to the model's pixel size by their µm per pixel, times a
    given factor.

    ``streams``: batches predicted at once, each in its own thread (with the onnx backend,
    the cores are shared out among them: ``cores // streams`` onnxruntime threads each);
    ``None``: :func:`~hemoscan.inference.backends.default_streams`. Outputs do not depend on it.

    ``exports``: result formats written after the scan (:data:`~hemoscan.choices.RESULT_FORMATS`).

    ``qc``: the thresholds of the image-quality checks recorded in ``qc.jsonl`` and
    ``summary.json`` (see :mod:`hemoscan.qc`).
    """

    model: str = DEFAULT_MODEL
    batch_size: int | None = None
    workers: int = 2
    conf: float | None = None
    device: str = "auto"
    sample_id: str | None = None
    tile_size: int | None = None
    overlap: int | None = None
    scale: float | str = "auto"
    save_overlays: bool = False
    save_crops: bool = False
    exports: tuple[str, ...] = ()
    retry_failed: bool = False
    backend: str = "auto"
    precision: str = "auto"
    engine: str = "local"
    scheduler: str | None = None
    mpp: float | None = None
    streams: int | None = None
    qc: QCThresholds = QCThresholds()


@dataclass(frozen=True)
class ScanSpec:
    """A scan's resolved settings.

    ``predictor``: everything that decides the detections (model identity, backend, device,
    batch size, tiling, scale, thresholds), resolved. ``streams``: concurrent inference
    streams, resolved. ``options``: the options as given, read for what needs no resolving
    (engine, workers, scheduler, sample id, pixel size, evidence, exports, retries, qc).
    """

    options: ScanOptions
    predictor: PredictorSpec
    streams: int

    def run_settings(self) -> dict[str, Any]:
        """``run.json``'s ``settings``: those that change counts (a resume must match them)."""
        p = self.predictor
        return {"model_name": p.model_name, "model_sha256": p.model_sha256,
                "thresholds": dict(p.thresholds), **p.tiling(), "mpp": self.options.mpp,
                "quantization": p.quantization}  # fmt: skip

    def provenance_settings(self) -> dict[str, Any]:
        """The ``settings`` of every sample's provenance in ``summary.json``."""
        p = self.predictor
        return {**p.tiling(), "backend": p.backend, "precision": p.precision,
                "quantization": p.quantization}  # fmt: skip


def resumed_precision(out_dir: Path) -> str | None:
    """The precision (``"fp32"`` or ``"int8"``) of the scan already in ``out_dir``, from its
    ``run.json``; ``None`` for a new scan (or an unreadable ``run.json``, which the store
    reports)."""
    if not (out_dir / RUN).is_file():
        return None
    try:
        quantization = read_run(out_dir)["settings"].get("quantization")
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return "int8" if quantization else "fp32"


def check_options(options: ScanOptions) -> None:
    """Raise :class:`~hemoscan.errors.SettingsError` for an option that is not one of its
    choices (:mod:`hemoscan.choices`) or out of range, before anything is loaded."""
    check_backend(options.backend)
    check_precision(options.precision)
    if options.engine not in ENGINES:
        raise SettingsError(f"unknown engine {options.engine!r}; choose from {', '.join(ENGINES)}")
    if options.scheduler and options.engine != "dask":
        raise SettingsError("a Dask scheduler address needs the dask engine (--engine dask)")
    unknown = set(options.exports) - set(RESULT_FORMATS)
    if unknown:
        raise SettingsError(
            f"unknown export format(s) {sorted(unknown)}; choose from {', '.join(RESULT_FORMATS)}"
        )
    if options.streams is not None and options.streams < 1:
        raise SettingsError(f"streams must be at least 1 (got {options.streams})")


def resolve_scan(
    options: ScanOptions, model: AnyModel | None = None, out_dir: Path | None = None
) -> tuple[ScanSpec, AnyModel]:
    """The resolved spec of a scan with ``options``, and the model its backend runs:
    ``model`` when given (a loaded model or export, e.g. in tests and notebooks), else the one
    ``options.model`` names. With onnxruntime, ``precision="auto"`` keeps the precision of the
    scan being resumed in ``out_dir`` (:func:`resumed_precision`), so that the plain command
    resumes a scan whichever export it started with.

    Raises :class:`~hemoscan.errors.SettingsError` for bad options,
    :class:`~hemoscan.errors.UnknownModelError` for a model name that names nothing (before
    anything is loaded), and the model loaders' errors for a model that cannot be loaded."""
    check_options(options)
    if model is None:
        resolve_model_folder(options.model)
    model = options.model if model is None else model
    device = resolve_device(options.device, options.backend)
    backend = resolve_backend(options.backend, model, device)
    streams = options.streams or default_streams(backend, device)
    precision = options.precision
    if backend == "onnx" and precision == AUTO_PRECISION and out_dir is not None:
        precision = resumed_precision(out_dir) or precision
    predictor, model = resolve_predictor(
        model,
        backend=backend,
        device=device,
        batch_size=options.batch_size,
        conf=options.conf,
        tile_size=options.tile_size,
        overlap=options.overlap,
        scale=options.scale,
        threads=max(1, cpu_cores() // streams),
        precision=precision,
    )
    return ScanSpec(options=options, predictor=predictor, streams=streams), model
