"""The values of hemoscan's enumerated options, in one place.

The library checks options against these tuples and the CLI builds its choices from them, so
a value is added here once. Standard library only: the CLI imports this module at start-up.
"""

from __future__ import annotations

#: Where a predictor runs the network (:mod:`hemoscan.inference.backends`): PyTorch, or an
#: ONNX export in onnxruntime on the CPU.
BACKENDS: tuple[str, ...] = ("torch", "onnx")
#: The ``backend`` a user may ask for: one of :data:`BACKENDS`, or ``"auto"`` (the model's ONNX
#: export on the CPU where it has one, else PyTorch; see
#: :func:`hemoscan.inference.backends.resolve_backend`).
AUTO_BACKEND = "auto"
BACKEND_CHOICES: tuple[str, ...] = (AUTO_BACKEND, *BACKENDS)
#: Where a scan's tiles are predicted (:mod:`hemoscan.engines`): this process, or the workers
#: of a Dask cluster.
ENGINES: tuple[str, ...] = ("local", "dask")
#: Formats a finished scan's results are written in (:mod:`hemoscan.io.result_exports`).
RESULT_FORMATS: tuple[str, ...] = ("geojson", "coco")
#: Formats a model is exported to (:mod:`hemoscan.model_export`).
MODEL_FORMATS: tuple[str, ...] = ("onnx",)
#: Quantizations of an ONNX export (:mod:`hemoscan.model_export.quantize`).
QUANTIZATIONS: tuple[str, ...] = ("int8",)
#: The arithmetic an ONNX export runs in: ``"auto"`` (a folder's own export; a resumed scan
#: keeps its precision, see :func:`hemoscan.scan_spec.resolve_scan`), full precision, or int8
#: (the int8 export a model folder carries, see :func:`hemoscan.models.onnx_format.load_onnx_model`).
AUTO_PRECISION = "auto"
PRECISIONS: tuple[str, ...] = ("fp32", *QUANTIZATIONS)
PRECISION_CHOICES: tuple[str, ...] = (AUTO_PRECISION, *PRECISIONS)
#: Formats reviewed detections are exported to for training (:mod:`hemoscan.review.export`).
REVIEW_EXPORT_FORMATS: tuple[str, ...] = ("coco", "yolo", "qupath")
