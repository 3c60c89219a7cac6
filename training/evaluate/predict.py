"""Running a suite through :class:`hemoscan.inference.predictor.Predictor`: both passes."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from hemoscan.annotations import AnnotatedImage
from hemoscan.datamodel import Detection, ScaleEstimate
from hemoscan.inference.backends import AnyModel
from hemoscan.inference.predictor import Predictor
from hemoscan.inference.scale import AUTO

from .common import EVAL_CONF
from .suites import Suite


@dataclass
class FieldRun:
    """One field's truth and the detections of both passes (``low``: every class at the
    evaluation floor; ``operating``: the model's thresholds); ``scale``: how the field was
    scaled for both (an ``"auto"`` field: the operating predictor's choice); ``oracle_scale``
    as :attr:`EvalField.oracle_scale`."""

    name: str
    sample: str
    truth: AnnotatedImage
    low: list[Detection] | None
    operating: list[Detection]
    ms: float
    scale: ScaleEstimate | None = None
    oracle_scale: float | None = None


Progress = Callable[[str, int, int], None]


def run_suite(
    model: AnyModel,
    suite: Suite,
    *,
    device: str = "cpu",
    eval_conf: float = EVAL_CONF,
    low_pass: bool = True,
    operating_pass: bool = True,
    progress: Progress | None = None,
    backend: str = "torch",
) -> list[FieldRun]:
    """Predict every field of ``suite`` (``progress(suite, done, total)`` after each) with the
    ``backend`` (``"onnx"`` for an :class:`~hemoscan.models.onnx_format.OnnxModel`).

    An ``"auto"`` field is scaled as a scan scales it: the predictor at the model's own
    thresholds estimates its scale (run even without ``operating_pass``: the thresholds
    decide which cells it measures), and the low-threshold pass runs at that scale."""
    cache: dict[tuple[float | str, float | None], Predictor] = {}

    def predictor(scale: float | str, conf: float | None) -> Predictor:
        key = (scale if isinstance(scale, str) else round(scale, 6), conf)
        if key not in cache:
            if len(cache) > 64:
                cache.clear()
            cache[key] = Predictor(model, device=device, conf=conf, scale=scale, backend=backend)
        return cache[key]

    runs = []
    for i, f in enumerate(suite.fields):
        image, truth = f.load()
        t0 = time.perf_counter()
        if f.scale == AUTO:
            (chosen,) = predictor(AUTO, None).predict_scaled([image])
            op, scale = (chosen.detections if operating_pass else []), chosen.scale
        else:
            op = predictor(f.scale, None).predict(image) if operating_pass else []
            scale = ScaleEstimate(float(f.scale), "given")
        ms = 1000 * (time.perf_counter() - t0)
        low = None
        if low_pass:
            fixed = [(scale.scale, scale.source)]
            low = predictor(scale.scale, eval_conf).predict_scaled([image], fixed)[0].detections
        runs.append(FieldRun(f.name, f.sample, truth, low, op, ms, scale, f.oracle_scale))
        if progress:
            progress(suite.name, i + 1, len(suite.fields))
    return runs
