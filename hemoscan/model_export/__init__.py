"""Model export: write a verified model in another format (``hemoscan export``).

Sits above :mod:`hemoscan.inference`, as ultralytics' exporter does: the file format is read
by :mod:`hemoscan.models.onnx_format` and run by
:class:`hemoscan.inference.backends.OnnxBackend`; this package writes it
(:mod:`hemoscan.model_export.onnx`) and quantizes it (:mod:`hemoscan.model_export.quantize`),
checking the result with the backend that will run it. Formats and quantizations offered:
:data:`hemoscan.choices.MODEL_FORMATS` and :data:`hemoscan.choices.QUANTIZATIONS`.
Not to be confused with the export of scan results (:mod:`hemoscan.io.result_exports`).
"""
