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

import cv2
import numpy as np
import torch

from hemoscan.datamodel import Detection, ScaleEstimate
from hemoscan.inference.backends import create_backend, default_batch_size, resolve_device
from hemoscan.inference.postprocess import decode_heatmaps, suppress_duplicates, to_detections
from hemoscan.inference.scale import (
    PROBE_SCALE,
    keeps,
    measure,
    parse_scale,
    trusted,
)
from hemoscan.inference.tiling import Window, grid
from hemoscan.models.config import ModelConfig
from hemoscan.models.export import OnnxModel
from hemoscan.models.loading import LoadedModel

_ALIGN = 32  # every architecture's largest stride
_MAX_PASSES = 4  # network passes over one image with scale="auto", at most


def _round_up(n: int, multiple: int = _ALIGN) -> int:
    return -(-n // multiple) * multiple


def normalisation(config: ModelConfig) -> tuple[np.ndarray, np.ndarray]:
    """``(mean, 1 / std)`` of ``config`` per RGB channel, in 0-255 pixel units."""
    mean = np.asarray(config.mean, np.float32) * 255
    inv_std = 1 / (np.asarray(config.std, np.float32) * 255)
    return mean, inv_std


def normalise_image(
    image: np.ndarray, mean: np.ndarray, inv_std: np.ndarray, scale: float = 1.0
) -> np.ndarray:
    """HWC uint8 RGB -> CHW float32: resized by ``scale`` (area interpolation to shrink,
    bilinear to enlarge), then ``(pixel - mean) * inv_std`` (see :func:`normalisation`)."""
    if scale != 1.0:
        h, w = image.shape[:2]
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        image = cv2.resize(image, size, interpolation=interp)
    return ((image.astype(np.float32) - mean) * inv_std).transpose(2, 0, 1)


def pad_to_multiple(array: np.ndarray, multiple: int = _ALIGN) -> np.ndarray:
    """A CHW array zero-padded at the bottom and right to multiples of ``multiple``, as
    :meth:`Predictor.predict_batch` pads an image smaller than the window."""
    c, h, w = array.shape
    out = np.zeros((c, _round_up(h, multiple), _round_up(w, multiple)), array.dtype)
    out[:, :h, :w] = array
    return out


@dataclass(frozen=True)
class _Job:
    image_index: int
    window: Window


@dataclass(frozen=True)
class ScaledPrediction:
    """One image's detections (its input pixels) and how it was scaled."""

    detections: list[Detection]
    scale: ScaleEstimate


#: A scale fixed for one image by the caller: ``(factor, source)``, source one of
#: :data:`~hemoscan.inference.scale.SCALE_SOURCES` (e.g. ``"sample"``, ``"slide-mpp"``).
FixedScale = tuple[float, str]


class Predictor:
    """Batched inference with a verified model.

    ``conf`` overrides every class's tuned threshold; ``tile_size``/``overlap`` (pixels of the
    rescaled image, multiples of 32) default to the model config's; ``scale`` resizes images
    before prediction (e.g. 0.5 halves them) and boxes are mapped back to input pixels.
    ``backend`` is ``"torch"`` or ``"onnx"`` (onnxruntime on the CPU; ``model`` is then an
    :class:`~hemoscan.models.export.OnnxModel` or a model whose folder holds its ONNX export,
    see ``hemoscan export``); see :mod:`hemoscan.inference.backends`. ``device="auto"`` and
    ``batch_size=None`` pick them from the hardware (:func:`resolve_device`,
    :func:`default_batch_size`).
    """

    def __init__(
        self,
        model: LoadedModel | OnnxModel,
        device: str = "auto",
        batch_size: int | None = None,
        conf: float | None = None,
        tile_size: int | None = None,
        overlap: int | None = None,
        scale: float | str = 1.0,
        backend: str = "torch",
    ) -> None:
        cfg = model.config
        self.config = cfg
        device = resolve_device(device, backend)
        self.device = torch.device(device)
        self.backend, self.stride = create_backend(model, backend, device)
        self.module = getattr(self.backend, "module", None)
        #: ``None`` (full precision) or the quantization method of an ONNX export, e.g.
        #: ``"int8-static-qdq"`` (see :mod:`hemoscan.models.quantize`).
        self.quantization: str | None = getattr(self.backend, "quantization", None)
        self.batch_size = max(1, batch_size or default_batch_size(device))
        self.tile_size = tile_size or cfg.tile_size
        self.overlap = cfg.overlap if overlap is None else overlap
        if (
            self.tile_size % _ALIGN
            or self.overlap % _ALIGN
            or not 0 <= self.overlap < self.tile_size
        ):
            raise ValueError(
                f"tile size and overlap must be multiples of {_ALIGN} with overlap < tile size "
                f"(got {self.tile_size}, {self.overlap})"
            )
        #: A positive factor, or ``"auto"``.
        self.scale: float | str = parse_scale(scale)
        self.thresholds = {c: (cfg.threshold(c) if conf is None else conf) for c in cfg.classes}
        self._threshold_tensor = torch.tensor([self.thresholds[c] for c in cfg.classes])
        self._mean, self._inv_std = normalisation(cfg)

    def normalise(self, image: np.ndarray, scale: float | None = None) -> np.ndarray:
        """HWC uint8 RGB -> CHW float32 normalised, rescaled by ``scale`` (default: the
        predictor's, 1 when it is ``"auto"``)."""
        if scale is None:
            scale = self.scale if isinstance(self.scale, float) else 1.0
        return normalise_image(image, self._mean, self._inv_std, scale)

    def predict(self, image: np.ndarray) -> list[Detection]:
        return self.predict_batch([image])[0]

    def predict_batch(self, images: list[np.ndarray]) -> list[list[Detection]]:
        """Detections for each HWC uint8 RGB image, in that image's pixel coordinates."""
        return [p.detections for p in self.predict_scaled(images)]

    def predict_scaled(
        self, images: list[np.ndarray], fixed: Sequence[FixedScale | None] | None = None
    ) -> list[ScaledPrediction]:
        """Detections for each HWC uint8 RGB image (its pixel coordinates) and its scale.

        ``fixed[i]``, when given, scales image ``i`` by a factor decided elsewhere (a sample's
        consensus, a slide's pixel size); otherwise the predictor's ``scale`` applies: a factor
        (source ``"given"``) or ``"auto"``, the image's own estimate
        (:mod:`hemoscan.inference.scale`: one to three passes of the network).
        """
        fixed = list(fixed) if fixed is not None else [None] * len(images)
        if isinstance(self.scale, float):
            fixed = [f or (self.scale, "given") for f in fixed]
        out: list[ScaledPrediction | None] = [None] * len(images)
        chosen = [i for i, f in enumerate(fixed) if f is not None]
        if chosen:
            found = self._detect([images[i] for i in chosen], [fixed[i][0] for i in chosen])  # type: ignore[index]
            for i, dets in zip(chosen, found):
                factor, source = fixed[i]  # type: ignore[misc]
                out[i] = ScaledPrediction(dets, ScaleEstimate(factor, source))
        auto = [i for i, f in enumerate(fixed) if f is None]
        if auto:
            for i, pred in zip(auto, self._predict_auto([images[i] for i in auto])):
                out[i] = pred
        return out  # type: ignore[return-value]

    def _predict_auto(self, images: list[np.ndarray]) -> list[ScaledPrediction]:
        """Each image at its own estimated scale: a coarse probe pass, then (unless the probe
        measured the cells reliably: a high magnification) a pass at scale 1, then a pass at
        the estimate unless one already run is close enough to it. Images without an estimate
        keep their scale-1 pass (``default``)."""
        passes: list[dict[float, list[Detection]]] = [{} for _ in images]
        plan: list[float | None] = [PROBE_SCALE] * len(images)
        done: list[ScaledPrediction | None] = [None] * len(images)
        while True:
            todo = [i for i, s in enumerate(plan) if s is not None]
            if not todo:
                return done  # type: ignore[return-value]
            found = self._detect([images[i] for i in todo], [plan[i] for i in todo])  # type: ignore[misc]
            for i, dets in zip(todo, found):
                passes[i][plan[i]] = dets  # type: ignore[index]
                plan[i] = None
                best = self._best_measure(passes[i])
                if best is not None:
                    estimate, source, cell_px, cells = best
                    kept = [s for s in passes[i] if keeps(s, estimate)]
                    if not kept and len(passes[i]) >= _MAX_PASSES:
                        kept = list(passes[i])
                    if kept:
                        s = min(kept, key=lambda s: abs(np.log(estimate / s)))
                        done[i] = ScaledPrediction(
                            passes[i][s], ScaleEstimate(s, source, estimate, cell_px, cells)
                        )
                    else:
                        plan[i] = float(f"{estimate:.3g}")
                    continue
                untried = [s for s in (PROBE_SCALE, 1.0) if s not in passes[i]]
                if untried:
                    plan[i] = untried[0]
                else:
                    done[i] = ScaledPrediction(passes[i][1.0], ScaleEstimate(1.0, "default"))

    def _best_measure(
        self, passes: dict[float, list[Detection]]
    ) -> tuple[float, str, float, int] | None:
        """``(estimate, source, cell_px, cells)`` of the pass that measured its cells reliably
        and saw them closest to the model's own size; ``None`` when no pass did."""
        best, best_gap = None, np.inf
        for pass_scale, dets in passes.items():
            m = measure(dets, self.config.rbc_diameter_px)
            if m and trusted(m[0], pass_scale) and abs(np.log(m[0] / pass_scale)) < best_gap:
                best, best_gap = m, abs(np.log(m[0] / pass_scale))
        return best

    def _detect(self, images: list[np.ndarray], scales: list[float]) -> list[list[Detection]]:
        """Detections for each image predicted at its scale, in the image's input pixels."""
        arrays = [self.normalise(img, s) for img, s in zip(images, scales)]
        by_shape: dict[tuple[int, int], list[_Job]] = defaultdict(list)
        for i, arr in enumerate(arrays):
            h, w = arr.shape[1:]
            for win in grid(w, h, self.tile_size, self.overlap):
                shape = (
                    (self.tile_size, self.tile_size)
                    if max(w, h) > self.tile_size
                    else (_round_up(h), _round_up(w))
                )
                by_shape[shape].append(_Job(i, win))

        found: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[] for _ in images]
        for (ph, pw), jobs in by_shape.items():
            for start in range(0, len(jobs), self.batch_size):
                chunk = jobs[start : start + self.batch_size]
                batch = np.zeros((len(chunk), 3, ph, pw), np.float32)
                for b, job in enumerate(chunk):
                    crop = arrays[job.image_index][
                        :, job.window.y0 : job.window.y0 + ph, job.window.x0 : job.window.x0 + pw
                    ]
                    batch[b, :, : crop.shape[1], : crop.shape[2]] = crop
                outputs = self._forward(batch)
                for b, job in enumerate(chunk):
                    found[job.image_index].append(self._decode_window(outputs, b, job.window))
        return [self._merge(parts, s) for parts, s in zip(found, scales)]

    def _forward(self, batch: np.ndarray) -> tuple[torch.Tensor, ...]:
        return self.backend(batch)

    def _decode_window(
        self, outputs: tuple[torch.Tensor, ...], b: int, win: Window
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        heat, size, offset = (o[b] for o in outputs)
        boxes, scores, labels = decode_heatmaps(
            heat, size, offset, self.stride, self._threshold_tensor, self.config.max_detections
        )
        boxes += np.array([win.x0, win.y0, win.x0, win.y0], np.float32)
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        inside = (cx >= win.cx0) & (cx < win.cx1) & (cy >= win.cy0) & (cy < win.cy1)
        return boxes[inside], scores[inside], labels[inside]

    def _merge(
        self, parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]], scale: float
    ) -> list[Detection]:
        boxes = np.concatenate([p[0] for p in parts]).reshape(-1, 4)
        scores = np.concatenate([p[1] for p in parts])
        labels = np.concatenate([p[2] for p in parts]).astype(np.int64)
        cfg = self.config
        keep = suppress_duplicates(boxes, scores, labels, cfg.classes, cfg.nms_iou, cfg.nms_ios)
        boxes = boxes[keep] / scale
        return to_detections(boxes, scores[keep], labels[keep], self.config.classes)
