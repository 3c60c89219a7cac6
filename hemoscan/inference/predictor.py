"""Run a loaded model over whole images, tiling those larger than the model's window.

``Predictor.predict_batch`` takes HWC uint8 RGB arrays and returns detections in each image's
own pixel frame. Images are rescaled (a given ``scale``, or each image's own with
``scale="auto"``: :mod:`hemoscan.inference.scale`), split into an overlapping grid of
windows (:mod:`hemoscan.inference.tiling`), run in batches of same-shaped windows, decoded,
kept where their centre lies in the window's core, and de-duplicated once per image, so
tiled prediction equals whole-image prediction wherever the network sees the same pixels.
``Predictor.predict_scaled`` also says how each image was scaled.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from hemoscan.datamodel import Detection, ScaleEstimate
from hemoscan.errors import SettingsError
from hemoscan.inference.backends import AnyModel, create_backend, model_for_backend
from hemoscan.inference.postprocess import (
    box_iou,
    decode_heatmaps_at,
    group_floors,
    suppress_duplicates,
    to_detections,
)
from hemoscan.inference.preprocess import normalisation, normalise_image, round_up
from hemoscan.inference.scale import (
    PROBE_SCALE,
    Measurement,
    best_reading,
    keeps,
    measure,
    probe_worth_rereading,
    rereadings,
    settled_at_scale_one,
    trusted_readings,
    unclaimed_red_cells,
)
from hemoscan.inference.spec import PredictorSpec, resolve_predictor
from hemoscan.inference.tiling import Window, grid

#: Near misses are hemophagocyte calls scoring below the threshold but at least this fraction of it.
NEAR_MISS_FLOOR = 0.5
#: Near misses kept per image, best first.
NEAR_MISSES_PER_IMAGE = 3
_NEAR_MISS_CLASS = "hemophagocyte"
#: A probe pass too poor in cells to measure a tile, where the scale-1 pass saw only a few large
#: objects (:func:`~hemoscan.inference.scale.probe_worth_rereading`), is read again down to this
#: fraction of the red-cell threshold, for the red cells the scale-1 pass did not call anything
#: else (:func:`~hemoscan.inference.scale.unclaimed_red_cells`): the sizes of cells the network is
#: less sure of still tell the magnification (at 100x oil a model may score the shrunk red cells
#: just under its threshold: hemoscan-lite0-v4-fastbox kept 1 of 19 on a Giemsa field, and
#: settled it at 0.78 on a few platelets seen at scale 1 instead of the 0.245 its red cells give).
MEASURING_FLOOR = 0.5


def _pass_scale(estimate: float) -> float:
    """The scale a pass at ``estimate`` runs at (3 significant digits: repeatable keys)."""
    return float(f"{estimate:.3g}")


def _settled(passes: dict[float, Prediction], best: Measurement, scale: float) -> Prediction:
    """The pass at ``scale`` of ``passes``, reported with the reading ``best`` that chose it."""
    return passes[scale]._replace(
        scale=ScaleEstimate(scale, best.source, best.estimate, best.cell_px, best.cells)
    )


class Prediction(NamedTuple):
    """What the model found in one image: ``detections`` (at or above the thresholds) and
    ``near_misses``: hemophagocyte calls that scored below the hemophagocyte threshold (and at
    least :data:`NEAR_MISS_FLOOR` of it), best first, at most :data:`NEAR_MISSES_PER_IMAGE`,
    with the engulfed cells their box holds that no detected hemophagocyte holds. Near misses
    are evidence for review, never counted; computing them leaves ``detections`` unchanged.
    ``scale``: how the image was scaled (set by :meth:`Predictor.predict_scaled`)."""

    detections: list[Detection]
    near_misses: list[Detection]
    scale: ScaleEstimate | None = None


#: One window's peaks: ``(boxes float32 [N, 4], scores [N], labels int64 [N])``.
_Peaks = tuple[np.ndarray, np.ndarray, np.ndarray]


@dataclass(frozen=True)
class _Job:
    image_index: int
    window: Window


#: A scale fixed for one image by the caller: ``(factor, source)``, source one of
#: :data:`~hemoscan.inference.scale.SCALE_SOURCES` (e.g. ``"sample"``, ``"slide-mpp"``).
FixedScale = tuple[float, str]


class Predictor:
    """Batched inference with a verified model, as its :class:`PredictorSpec` says.

    ``Predictor(model, spec)`` builds the predictor a resolved spec describes (``model`` must
    be the one it was resolved for). ``Predictor(model, **settings)`` resolves the spec first:
    ``settings`` are :func:`~hemoscan.inference.spec.resolve_predictor`'s (``backend``,
    ``device``, ``batch_size``, ``conf``, ``tile_size``, ``overlap``, ``scale``), e.g.
    ``Predictor(model, scale=0.5)`` halves images before prediction (boxes are mapped back to
    input pixels). ``model``: a loaded model, an ONNX export, or a shipped model name or folder.
    """

    def __init__(
        self, model: str | AnyModel, spec: PredictorSpec | None = None, **settings: Any
    ) -> None:
        if spec is None:
            spec, model = resolve_predictor(model, **settings)
        elif settings:
            raise TypeError("give a resolved spec or settings, not both")
        else:
            model = model_for_backend(model, spec.backend)
            mismatch = spec.mismatch(model)
            if mismatch:
                raise SettingsError(f"the model is not the spec's: {mismatch}")
        self.spec = spec
        cfg = self.config = model.config
        self.device = spec.device
        self.backend, self.stride = create_backend(model, spec.device)
        self.module = getattr(self.backend, "module", None)
        #: ``None`` (full precision) or the quantization method of an ONNX export, e.g.
        #: ``"int8-static-qdq"`` (see :mod:`hemoscan.model_export.quantize`).
        self.quantization: str | None = spec.quantization
        self.batch_size = spec.batch_size
        self.tile_size = spec.tile_size
        self.overlap = spec.overlap
        #: A positive factor, or ``"auto"``.
        self.scale: float | str = spec.scale
        self.thresholds = dict(spec.thresholds)
        self._thresholds = np.array([self.thresholds[c] for c in cfg.classes], np.float32)
        self._measuring_thresholds = np.array(
            [MEASURING_FLOOR * self.thresholds[c] if c == "rbc" else float("inf")
             for c in cfg.classes], np.float32,
        )  # fmt: skip
        self._near_miss_thresholds = np.array(
            [NEAR_MISS_FLOOR * self.thresholds[c] if c == _NEAR_MISS_CLASS else float("inf")
             for c in cfg.classes], np.float32,
        )  # fmt: skip
        self._mean, self._inv_std = normalisation(cfg)

    def normalise(self, image: np.ndarray, scale: float | None = None) -> np.ndarray:
        """HWC uint8 RGB -> CHW float32 normalised, rescaled by ``scale`` (default: the
        predictor's, 1 when it is ``"auto"``)."""
        if scale is None:
            scale = self.spec.given_scale
        return normalise_image(image, self._mean, self._inv_std, scale)

    def predict(self, image: np.ndarray) -> list[Detection]:
        return self.predict_batch([image])[0]

    def predict_batch(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Detections for each HWC uint8 RGB image, in that image's pixel coordinates."""
        return [p.detections for p in self.predict_scaled(images)]

    def predict_scaled(
        self, images: list[np.ndarray], fixed: Sequence[FixedScale | None] | None = None
    ) -> list[Prediction]:
        """Detections for each HWC uint8 RGB image (its pixel coordinates) and its scale.

        ``fixed[i]``, when given, scales image ``i`` by a factor decided elsewhere (a sample's
        consensus, a slide's pixel size); otherwise the predictor's ``scale`` applies: a factor
        (source ``"given"``) or ``"auto"``, the image's own estimate
        (:mod:`hemoscan.inference.scale`: one to five passes of the network).
        """
        fixed = list(fixed) if fixed is not None else [None] * len(images)
        if isinstance(self.scale, float):
            fixed = [f or (self.scale, "given") for f in fixed]
        out: list[Prediction | None] = [None] * len(images)
        chosen = [i for i, f in enumerate(fixed) if f is not None]
        if chosen:
            found = self._detect([images[i] for i in chosen], [fixed[i][0] for i in chosen])  # type: ignore[index]
            for i, pred in zip(chosen, found):
                factor, source = fixed[i]  # type: ignore[misc]
                out[i] = pred._replace(scale=ScaleEstimate(factor, source))
        auto = [i for i, f in enumerate(fixed) if f is None]
        if auto:
            for i, pred in zip(auto, self._predict_auto([images[i] for i in auto])):
                out[i] = pred
        return out  # type: ignore[return-value]

    def _predict_auto(self, images: list[np.ndarray]) -> list[Prediction]:
        """Each image at its own estimated scale (:mod:`hemoscan.inference.scale`): a pass at
        scale 1, kept when its own red cells say it is at the right scale; otherwise a pass at
        the probe scale too (read again below the thresholds when it finds too few cells to
        measure: :data:`MEASURING_FLOOR`; and, where the two read red cells far apart, a pass at
        each reading), then one at the chosen reading's estimate unless a pass already run is
        close enough to it. That last pass is final: its own reading is not followed (at most
        five passes). Images without an estimate keep their scale-1 pass (``default``)."""
        passes: list[dict[float, Prediction]] = [{} for _ in images]
        read: list[dict[float, list[Detection]]] = [{} for _ in images]  # what each pass measures
        scale_one: list[Measurement | None] = [None] * len(images)  # its reading, when unsettled
        plan: list[list[float]] = [[1.0] for _ in images]
        done: list[Prediction | None] = [None] * len(images)
        chosen: list[Measurement | None] = [None] * len(images)  # the reading its last pass is at
        rbc_px = self.config.rbc_diameter_px
        while True:
            jobs = [(i, s) for i, scales in enumerate(plan) for s in scales]
            if not jobs:
                return done  # type: ignore[return-value]
            found = self._detect([images[i] for i, _ in jobs], [s for _, s in jobs])
            for (i, s), pred in zip(jobs, found):
                passes[i][s] = pred
                read[i][s] = pred.detections
            poor = [
                i
                for i, s in jobs
                if s == PROBE_SCALE
                and measure(read[i][s], rbc_px) is None
                and probe_worth_rereading(scale_one[i], images[i].shape[0] * images[i].shape[1])
            ]
            if poor:  # read only for the tile's scale, never reported
                again = self._detect([images[i] for i in poor], [PROBE_SCALE] * len(poor),
                                     self._measuring_thresholds)  # fmt: skip
                for i, pred in zip(poor, again):
                    read[i][PROBE_SCALE] = unclaimed_red_cells(
                        pred.detections, passes[i][1.0].detections
                    )
            for i in {i for i, _ in jobs}:
                plan[i] = []
                if chosen[i] is not None:  # the pass at the chosen reading: final, not read again
                    done[i] = _settled(passes[i], chosen[i], _pass_scale(chosen[i].estimate))
                    continue
                readings = trusted_readings(read[i].items(), rbc_px)
                best = best_reading(readings)
                if len(passes[i]) == 1:
                    h, w = images[i].shape[:2]
                    if not settled_at_scale_one(best, h * w):
                        plan[i], scale_one[i] = [PROBE_SCALE], best
                        continue
                if best is None:
                    done[i] = passes[i][1.0]._replace(scale=ScaleEstimate(1.0, "default"))
                    continue
                if len(passes[i]) == 2:  # scale 1 and the probe: do they read the same cells?
                    plan[i] = [s for s in map(_pass_scale, rereadings(readings))
                               if not any(keeps(p, s) for p in passes[i])]  # fmt: skip
                    if plan[i]:
                        continue
                kept = [s for s in passes[i] if keeps(s, best.estimate)]
                if kept:
                    nearest = min(kept, key=lambda s: abs(np.log(best.estimate / s)))
                    done[i] = _settled(passes[i], best, nearest)
                else:
                    plan[i], chosen[i] = [_pass_scale(best.estimate)], best

    def _detect(
        self, images: list[np.ndarray], scales: list[float], thresholds: np.ndarray | None = None
    ) -> list[Prediction]:
        """What the model finds in each image predicted at its scale, in the image's input
        pixels, at the predictor's thresholds or at ``thresholds`` (``float32 [K]``)."""
        if thresholds is None:
            thresholds = self._thresholds
        floors = group_floors(thresholds, self.config.classes)
        arrays = [self.normalise(img, s) for img, s in zip(images, scales)]
        by_shape: dict[tuple[int, int], list[_Job]] = defaultdict(list)
        for i, arr in enumerate(arrays):
            h, w = arr.shape[1:]
            for win in grid(w, h, self.tile_size, self.overlap):
                shape = (
                    (self.tile_size, self.tile_size)
                    if max(w, h) > self.tile_size
                    else (round_up(h), round_up(w))
                )
                by_shape[shape].append(_Job(i, win))

        found: list[list[tuple[_Peaks, _Peaks]]] = [[] for _ in images]
        for (ph, pw), jobs in by_shape.items():
            for start in range(0, len(jobs), self.batch_size):
                chunk = jobs[start : start + self.batch_size]
                crops = [
                    arrays[job.image_index][
                        :, job.window.y0 : job.window.y0 + ph, job.window.x0 : job.window.x0 + pw
                    ]
                    for job in chunk
                ]
                if len(crops) == 1 and crops[0].shape[1:] == (ph, pw):
                    batch = crops[0][None]  # a whole tile of an aligned size: no copy
                else:
                    batch = np.zeros((len(chunk), 3, ph, pw), np.float32)
                    for b, crop in enumerate(crops):
                        batch[b, :, : crop.shape[1], : crop.shape[2]] = crop
                outputs = self._forward(batch)
                for b, job in enumerate(chunk):
                    found[job.image_index].append(
                        self._decode_window(outputs, b, job.window, floors)
                    )
        return [self._merge(parts, s, thresholds) for parts, s in zip(found, scales)]

    def _forward(self, batch: np.ndarray) -> tuple[np.ndarray, ...]:
        return self.backend(batch)

    def _decode_window(
        self, outputs: tuple[np.ndarray, ...], b: int, win: Window, floors: np.ndarray
    ) -> tuple[_Peaks, _Peaks]:
        """The window's candidate detections (peaks at or above ``floors``, see
        :func:`~hemoscan.inference.postprocess.group_floors`) and near-miss candidates, in image
        pixels, core only."""
        heat, size, offset = (o[b] for o in outputs)
        found, near = decode_heatmaps_at(
            heat, size, offset, self.stride, (floors, self._near_miss_thresholds),
            self.config.max_detections,
        )  # fmt: skip
        return self._in_core(found, win), self._in_core(near, win, below=self._thresholds)

    @staticmethod
    def _in_core(peaks: _Peaks, win: Window, below: np.ndarray | None = None) -> _Peaks:
        boxes, scores, labels = peaks
        boxes = boxes + np.array([win.x0, win.y0, win.x0, win.y0], np.float32)
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        keep = (cx >= win.cx0) & (cx < win.cx1) & (cy >= win.cy0) & (cy < win.cy1)
        if below is not None:
            keep &= scores < below[labels]
        return boxes[keep], scores[keep], labels[keep]

    def _merge(
        self, parts: list[tuple[_Peaks, _Peaks]], scale: float, thresholds: np.ndarray
    ) -> Prediction:
        boxes, scores, labels = (np.concatenate([p[0][i] for p in parts]) for i in range(3))
        boxes, labels = boxes.reshape(-1, 4), labels.astype(np.int64)
        cfg = self.config
        keep = suppress_duplicates(boxes, scores, labels, cfg.classes, cfg.nms_iou, cfg.nms_ios)
        keep = keep[scores[keep] >= thresholds[labels[keep]]]  # see group_floors
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        near = self._near_misses([p[1] for p in parts], boxes, labels)
        # Near misses ride at the end: every detection keeps its place and its engulfed cells
        # (a detected hemophagocyte outscores any near miss, so it is offered each cell first).
        cells = to_detections(np.concatenate([boxes, near[0]]) / scale,
                              np.concatenate([scores, near[1]]),
                              np.concatenate([labels, near[2]]), cfg.classes)  # fmt: skip
        split = len(cells) - len(near[1])
        return Prediction(cells[:split], cells[split:])

    def _near_misses(self, parts: list[_Peaks], boxes: np.ndarray, labels: np.ndarray) -> _Peaks:
        """The best near-miss candidates that are not a detected hemophagocyte's own peak."""
        near_boxes, near_scores, near_labels = (np.concatenate([p[i] for p in parts])
                                                for i in range(3))  # fmt: skip
        near_boxes, near_labels = near_boxes.reshape(-1, 4), near_labels.astype(np.int64)
        if not len(near_scores):
            return near_boxes, near_scores, near_labels
        keep = suppress_duplicates(near_boxes, near_scores, near_labels, self.config.classes,
                                   self.config.nms_iou)  # fmt: skip
        hosts = boxes[labels == self.config.classes.index(_NEAR_MISS_CLASS)]
        if len(hosts):
            overlap = box_iou(near_boxes[keep], hosts)
            keep = keep[(overlap <= np.float32(self.config.nms_iou)).all(axis=1)]
        keep = keep[:NEAR_MISSES_PER_IMAGE]
        return near_boxes[keep], near_scores[keep], near_labels[keep]
