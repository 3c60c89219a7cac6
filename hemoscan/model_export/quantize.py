"""Static INT8 quantization of an ONNX export, for more speed on the CPU.

``hemoscan export MODEL --format onnx --out FOLDER --quantize int8 [--calibration SOURCES...]``
first writes and checks the full-precision export (:func:`~hemoscan.model_export.onnx.export_onnx`),
then replaces its ``model.onnx`` by an INT8 graph in onnxruntime's QDQ format
(``QuantizeLinear``/``DequantizeLinear`` pairs around the operators, which onnxruntime's CPU
kernels fuse into integer convolutions):

* activations: uint8, asymmetric, ranges from the min/max seen on the calibration images;
* weights: int8 per output channel, with the full 8-bit range on a CPU with VNNI
  (:func:`~hemoscan.hardware.cpu_has_vnni`), else a 7-bit range (``reduce_range``): on x86 CPUs
  without VNNI (AVX2 only) onnxruntime multiplies uint8 by int8 with ``VPMADDUBSW``, whose
  16-bit sums saturate with full 8-bit weights;
* the operators that read the image itself (the stem convolution) stay in float32: normalised
  RGB with three input channels loses most precision when rounded to 8 bits;
* so do the prediction heads (:data:`FLOAT32_HEADS`), whose outputs are the scores and boxes
  themselves (about a fifth of the float32 network's time on EfficientNet-Lite0).

On hemoscan-lite0-v3, calibrated on 49 real training fields (``python -m
hemoscan_training.calibration_tiles``) and evaluated on the held-out suites at native
resolution (session 7, an AMD EPYC with VNNI): with the heads in float32 and 8-bit weights the
AP50s stayed within 0.001 of float32 or above it (TXL-PBC val platelet 0.847 vs 0.819), with as
many composed-val hemophagocytes found and false calls (65, 33), though 4 of the 98 calls
changed (hemophagocyte scores moved by up to 0.09); with 7-bit weights platelet AP50 fell to 0.780 and lavage nucleated to 0.792 (from
0.874); with only the stem in float32 and 7-bit weights (session 5) platelet fell to 0.727.

On ``hemoscan-lite0-v1`` calibrated on 8 example tiles (512 px) and compared on 8 others, on an
AVX2 CPU (no VNNI), the 7-bit weights lowered the largest heatmap-probability difference to
float32 from 0.67 to 0.35 (mean 0.0039 -> 0.0026), and keeping the stem in float32 to 0.20 (mean
0.0017); neither made the graph measurably slower on that (busy) machine.

Calibration images are the user's tiles (files, folders, globs or lists, as ``hemoscan scan``
takes them; up to :data:`CALIBRATION_IMAGES`, spread evenly over the list) or, without them,
procedurally generated example tiles (:mod:`hemoscan.examples`) drawn at the model's red-cell
size. Tiles like the ones that will be scanned give better ranges. Each image is centre-cropped
to at most ``min(CALIBRATION_MAX_SIZE, the model's tile size)`` pixels a side, normalised as
:mod:`hemoscan.inference.preprocess` prepares every network input (zero-padded to multiples of 32).

An INT8 graph cannot match PyTorch within the 1e-4 that full-precision exports are held to:
each activation is rounded to one of 256 levels, so logits move by up to a few hundredths and
occasionally more. The export therefore checks that the graph loads and that its outputs have
the float32 graph's shapes (also at another batch size and image shape) and are finite, and
records how far its heatmap probabilities are from float32's on the calibration images (which
it was calibrated on, so an optimistic figure). Accuracy on real data must be measured:
``hemoscan evaluate --model FOLDER --backend onnx``.

The sidecar (``onnx.json``) records, besides the full-precision keys::

    "quantization": {"method": "int8-static-qdq", "calibration": "user-tiles" | "example-tiles",
                     "calibration_note": "...", "images": N, "image_size": 512,
                     "max_abs_heatmap_prob_diff": ..., "mean_abs_heatmap_prob_diff": ...,
                     "measured_on": "...", "activations": "...", "weights": "...",
                     "float32_nodes": [...], "float32_onnx_sha256": "...", "onnxruntime": "..."}

Calibration paths are not recorded (folder names are often patient identifiers).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hemoscan.errors import HemoscanError, QuantizationError
from hemoscan.examples import render_example_tile
from hemoscan.hardware import cpu_has_vnni
from hemoscan.inference.preprocess import normalisation, normalise_image, pad_to_multiple
from hemoscan.io.images import read_tile
from hemoscan.io.slides import is_slide
from hemoscan.io.sources import expand_sources
from hemoscan.models.config import ModelConfig
from hemoscan.models.loading import sha256_file
from hemoscan.models.onnx_format import (
    INPUT_NAME,
    METHODS,
    ONNX_SIDECAR,
    OUTPUT_NAMES,
    onnx_session,
)

#: Module names of the prediction heads of every hemoscan architecture
#: (:mod:`hemoscan.models.centernet`): their operators stay in float32.
FLOAT32_HEADS: tuple[str, ...] = ("heatmap", "size", "offset", "box", "box_features")
#: Most calibration images used.
CALIBRATION_IMAGES = 32
#: Largest side, pixels, of a calibration image (also capped at the model's tile size).
CALIBRATION_MAX_SIZE = 512
#: Seed of the example tiles used when no calibration tiles are given.
EXAMPLE_SEED = 0
USER_TILES = "user-tiles"
EXAMPLE_TILES = "example-tiles"
ADVICE = "calibrating on your own tiles (--calibration TILES...) gives better int8 ranges"


@dataclass(frozen=True)
class Calibration:
    """Preprocessed calibration images and where they came from.

    ``arrays``: one normalised float32 ``[1, 3, H, W]`` array per image (H, W multiples of 32);
    ``kind``: :data:`USER_TILES` or :data:`EXAMPLE_TILES`; ``note``: a sentence for people.
    """

    arrays: tuple[np.ndarray, ...]
    kind: str
    note: str
    image_size: int


def method_of(quantize: str) -> str:
    """The method recorded for ``--quantize quantize``; raises for an unknown value."""
    try:
        return METHODS[quantize]
    except KeyError:
        raise QuantizationError(
            f"unknown quantization {quantize!r}; choose from {', '.join(METHODS)}"
        ) from None


def _spread(items: Sequence[str], n: int) -> list[str]:
    """At most ``n`` of ``items``, evenly spaced over the sequence (first and last included)."""
    if len(items) <= n:
        return list(items)
    picks = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in dict.fromkeys(picks.tolist())]


def _centre_crop(image: np.ndarray, side: int) -> np.ndarray:
    h, w = image.shape[:2]
    y0, x0 = max(0, (h - side) // 2), max(0, (w - side) // 2)
    return image[y0 : y0 + side, x0 : x0 + side]


def calibration_batch(
    config: ModelConfig,
    sources: Sequence[str] | None = None,
    max_images: int = CALIBRATION_IMAGES,
    max_size: int = CALIBRATION_MAX_SIZE,
) -> Calibration:
    """Calibration images for a model with ``config``: from ``sources`` (image tiles: files,
    folders, globs or ``.txt`` lists, see :func:`~hemoscan.io.sources.expand_sources`), or
    procedurally generated example tiles when ``sources`` is empty.

    Whole-slide images among the sources are skipped (they need a pixel size and regions:
    give tiles cut from them). Raises :class:`~hemoscan.errors.SourceError` for sources that
    name nothing, :class:`~hemoscan.errors.ImageReadError` for an unreadable tile and
    :class:`~hemoscan.errors.QuantizationError` when no usable tile is left.
    """
    if max_images < 1:
        raise QuantizationError(f"at least one calibration image is needed (got {max_images})")
    side = min(max_size, config.tile_size)
    if side < 32:
        raise QuantizationError(f"calibration images must be at least 32 px (got {side})")
    if sources:
        paths = [t.path for t in expand_sources(list(sources))]
        tiles = [p for p in paths if not is_slide(p)]
        if not tiles:
            raise QuantizationError(
                "the calibration sources hold only whole-slide images; give image tiles "
                "(PNG, JPEG, TIFF) like the ones you scan"
            )
        picked = _spread(tiles, max_images)
        images = [read_tile(p) for p in picked]
        skipped = len(paths) - len(tiles)
        note = f"{len(images)} of your {len(tiles)} tile(s)" + (
            f" ({skipped} whole-slide image(s) skipped)" if skipped else ""
        )
        kind = USER_TILES
    else:
        rng = np.random.default_rng(EXAMPLE_SEED)
        diameter = min(float(config.rbc_diameter_px), float(side))
        images = [
            render_example_tile(rng, (side, side), rbc_diameter_px=diameter,
                                hemophagocytes=i % 2, macrophages=(i + 1) % 2)[0]
            for i in range(max_images)
        ]  # fmt: skip
        note = (
            f"{len(images)} procedurally generated example tiles (hemoscan.examples, not real "
            f"smears); {ADVICE}"
        )
        kind = EXAMPLE_TILES
    mean, inv_std = normalisation(config)
    arrays = tuple(
        pad_to_multiple(normalise_image(_centre_crop(image, side), mean, inv_std))[None]
        for image in images
    )
    return Calibration(arrays=arrays, kind=kind, note=note, image_size=side)


def _heatmap_prob(logits: np.ndarray) -> np.ndarray:
    """sigmoid without overflow warnings."""
    return 0.5 * (1.0 + np.tanh(0.5 * logits.astype(np.float64)))


def float32_nodes(graph: Any) -> list[str]:
    """Names of the nodes of an ONNX ``graph`` that stay in float32: those reading the image
    and those of the prediction heads (:data:`FLOAT32_HEADS`). The exporter names a head's
    operators ``/heatmap/heatmap.0/Conv``, or ``/heatmap.0/Conv`` where the forward pass calls
    slices of the head (the box-on-heatmap architecture)."""
    heads = tuple(f"/{h}{sep}" for h in FLOAT32_HEADS for sep in "/.")
    return [n.name for n in graph.node
            if n.name and (INPUT_NAME in n.input or n.name.startswith(heads))]  # fmt: skip


def quantize_export(
    folder: Path, calibration: Calibration, quantize: str = "int8", threads: int | None = None
) -> dict[str, Any]:
    """Replace the full-precision ``model.onnx`` of the export in ``folder`` by a statically
    quantized one (see the module docstring) and return the sidecar's ``quantization`` record.

    The sidecar is removed first and written back last, so an interrupted or failed
    quantization leaves no loadable folder. Raises :class:`~hemoscan.errors.QuantizationError`
    when onnxruntime cannot quantize the graph or the quantized graph fails its checks.
    """
    method = method_of(quantize)
    try:  # lazy: onnx is the optional `onnx` extra, and onnxruntime.quantization needs it
        import onnx
        import onnxruntime
        from onnxruntime.quantization import (
            CalibrationDataReader,
            CalibrationMethod,
            QuantFormat,
            QuantType,
            quant_pre_process,
            quantize_static,
        )
    except ImportError as e:
        raise HemoscanError(
            f"int8 quantization needs the onnx package: pip install 'hemoscan[onnx]' ({e})"
        ) from None

    folder = Path(folder)
    sidecar_path = folder / ONNX_SIDECAR
    sidecar = json.loads(sidecar_path.read_text())
    if sidecar.get("quantization"):
        raise QuantizationError(f"{folder}: the export is already quantized")
    fp32_path = folder / sidecar["file"]
    fp32_sha256 = sha256_file(fp32_path)
    if fp32_sha256 != sidecar["sha256"]:
        raise QuantizationError(f"{fp32_path}: does not match its sidecar; export again")

    class _Reader(CalibrationDataReader):  # type: ignore[misc]
        def __init__(self, arrays: Sequence[np.ndarray]) -> None:
            self._it = iter(arrays)

        def get_next(self) -> dict[str, np.ndarray] | None:
            array = next(self._it, None)
            return None if array is None else {INPUT_NAME: array}

    sidecar_path.unlink()
    with tempfile.TemporaryDirectory(prefix="hemoscan-quantize-") as tmp:
        pre = Path(tmp) / "pre.onnx"
        int8_path = Path(tmp) / "int8.onnx"
        try:
            # shape inference and graph clean-up, as onnxruntime recommends before quantizing
            quant_pre_process(str(fp32_path), str(pre))
            keep_fp32 = float32_nodes(onnx.load(str(pre)).graph)
            full_range = cpu_has_vnni()
            quantize_static(
                str(pre),
                str(int8_path),
                _Reader(calibration.arrays),
                quant_format=QuantFormat.QDQ,
                per_channel=True,
                reduce_range=not full_range,
                activation_type=QuantType.QUInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=CalibrationMethod.MinMax,
                nodes_to_exclude=keep_fp32,
            )
            onnx.checker.check_model(str(int8_path))
        except Exception as e:  # onnx and onnxruntime raise many exception types
            raise QuantizationError(
                f"{folder}: onnxruntime could not quantize the export: {e}"
            ) from e
        data = int8_path.read_bytes()
        max_diff, mean_diff = _compare(onnx_session(fp32_path, threads), onnx_session(data, threads),
                                       calibration.arrays, INPUT_NAME, OUTPUT_NAMES, folder)  # fmt: skip
        tmp_out = folder / (fp32_path.name + ".tmp")
        tmp_out.write_bytes(data)
    os.replace(tmp_out, fp32_path)
    record: dict[str, Any] = {
        "method": method,
        "calibration": calibration.kind,
        "calibration_note": calibration.note,
        "images": len(calibration.arrays),
        "image_size": calibration.image_size,
        "max_abs_heatmap_prob_diff": round(max_diff, 6),
        "mean_abs_heatmap_prob_diff": round(mean_diff, 6),
        "measured_on": (
            "the calibration images: |sigmoid(heatmap) int8 - float32| over every cell and class "
            "(in-sample, so optimistic; evaluate on your own data)"
        ),
        "activations": "uint8 asymmetric, min/max calibration",
        "weights": "int8 per output channel, "
        + ("8-bit range (made on a CPU with VNNI)" if full_range else "7-bit range (reduce_range)"),
        "float32_nodes": keep_fp32,
        "float32_onnx_sha256": fp32_sha256,
        "onnxruntime": onnxruntime.__version__,
    }
    sidecar.update(sha256=sha256_file(fp32_path), quantization=record)
    sidecar_path.write_text(json.dumps(sidecar, indent=2) + "\n")
    return record


def _compare(
    fp32: Any,
    int8: Any,
    arrays: Sequence[np.ndarray],
    input_name: str,
    output_names: Sequence[str],
    folder: Path,
) -> tuple[float, float]:
    """``(max, mean)`` of |heatmap probability difference| between two sessions on ``arrays``,
    after checking that the int8 outputs have float32's shapes (on ``arrays`` and on a batch of
    two at another size) and are finite."""
    probe = np.random.default_rng(0).standard_normal((2, 3, 96, 160)).astype(np.float32)
    largest, total, count = 0.0, 0.0, 0
    for i, array in enumerate((*arrays, probe)):
        expected = fp32.run(list(output_names), {input_name: array})
        got = int8.run(list(output_names), {input_name: array})
        for name, e, g in zip(output_names, expected, got):
            if e.shape != g.shape or not np.isfinite(g).all():
                raise QuantizationError(
                    f"{folder}: the int8 graph's {name!r} output is wrong on input "
                    f"{tuple(array.shape)}: shape {tuple(g.shape)} (float32: {tuple(e.shape)}), "
                    f"finite: {bool(np.isfinite(g).all())}"
                )
        if i < len(arrays):
            diff = np.abs(_heatmap_prob(expected[0]) - _heatmap_prob(got[0]))
            largest = max(largest, float(diff.max()))
            total += float(diff.sum())
            count += diff.size
    return largest, total / count
