"""The per-tile work of a scan, in this process: decode, batch, predict (``--engine local``).

:func:`scan_items` is what every engine runs on its tiles: here for the local engine
(:func:`scan_locally`), and on each worker for the Dask engine
(:mod:`hemoscan.engines.dask_engine`). Tiles are decoded in a thread pool ahead of
inference and predicted in batches by concurrent streams; results come back in input order,
one :class:`ScannedTile` per tile, a failed tile as an ``error`` result, never an exception.
Writing them is :func:`hemoscan.pipeline.scan`'s.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import NamedTuple

import cv2
import numpy as np

from hemoscan.datamodel import Detection, TileQC, TileResult
from hemoscan.errors import HemoscanError
from hemoscan.hardware import device_type
from hemoscan.inference.predictor import FixedScale, Predictor
from hemoscan.io.sources import TileSource, read_source
from hemoscan.qc import tile_qc
from hemoscan.scan_spec import ScanSpec

log = logging.getLogger(__name__)

#: Batches submitted per inference stream while the oldest one's results are awaited. Results
#: leave in input order, so with one a tile that takes extra passes (automatic scale) held the
#: queue back and left the other core idle: two made the plain scan of 200 512 px tiles ~2%
#: faster on 2 cores (interleaved runs, session 10).
BATCHES_AHEAD_PER_STREAM = 2
#: OpenCV's own threads while a scan runs the network on the CPU. The scan is already parallel
#: across tiles there (decode threads, one inference stream per core); OpenCV spreading each
#: tile's filtering and colour conversion over its thread pool as well cost CPU the network needs:
#: the work beside the network took 12.2 ms of CPU a 512 px tile with OpenCV's default (a thread
#: per core), 8.5-9.4 with one (``benchmarks/scan_overhead.py``, session 15). On a GPU the CPU has
#: cores to spare, and OpenCV keeps its own setting.
OPENCV_THREADS_ON_CPU = 1


class Decoded(NamedTuple):
    """A source after reading: its HWC uint8 RGB ``image`` (``None`` when it failed, with the
    ``error``), and the milliseconds reading took."""

    source: TileSource
    image: np.ndarray | None
    error: str
    ms: float


class ScannedTile(NamedTuple):
    """One work item's outcome as an engine hands it to :func:`hemoscan.pipeline.scan` (in
    input order).

    ``image`` is the decoded tile for evidence (crops, overlays), or ``None`` when the tile
    failed or was decoded elsewhere (a Dask worker): ``scan`` then re-reads it if needed.
    """

    source: TileSource
    result: TileResult
    image: np.ndarray | None


def decode(source: TileSource) -> Decoded:
    """Read ``source``; a failure is recorded in the result, never raised."""
    start = time.perf_counter()
    try:
        image, error = read_source(source), ""
    except HemoscanError as e:
        image, error = None, str(e)
    except Exception as e:  # noqa: BLE001 - a scan records every failure and goes on
        image, error = None, f"{source.name}: unexpected error while reading: {e!r}"
    return Decoded(source, image, error, (time.perf_counter() - start) * 1000)


def _decoded(sources: Iterable[TileSource], workers: int, lookahead: int) -> Iterator[Decoded]:
    """Decode ``sources`` in order with ``workers`` threads, at most ``lookahead`` ahead."""
    if workers <= 0:
        yield from map(decode, sources)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future[Decoded]] = deque()
        it = iter(sources)
        for source in it:
            pending.append(pool.submit(decode, source))
            if len(pending) >= lookahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def scan_locally(
    items: Iterable[TileSource], predictor: Predictor, spec: ScanSpec
) -> Iterator[ScannedTile]:
    """``items`` scanned in this process with the decode threads and streams of ``spec``."""
    workers = spec.options.workers
    lookahead = max(2 * spec.streams * predictor.batch_size, 2 * max(workers, 1))
    return scan_items(predictor, items, workers, lookahead, spec.streams)


def scan_items(
    predictor: Predictor,
    items: Iterable[TileSource],
    workers: int = 0,
    lookahead: int = 2,
    streams: int = 1,
) -> Iterator[ScannedTile]:
    """The per-tile work of every engine: decode, batch and predict ``items``, in order.

    Tiles are decoded by ``workers`` threads (0: inline), at most ``lookahead`` ahead, and
    predicted ``predictor.batch_size`` images at a time, ``streams`` batches at once in their
    own threads, :data:`BATCHES_AHEAD_PER_STREAM` batches per stream submitted ahead. Yields
    one :class:`ScannedTile` per item, in input order (a failed tile waits for the batch
    before it). A tile that cannot be read, or whose batch fails in inference, is an ``error``
    result, never an exception. Meanwhile OpenCV runs :data:`OPENCV_THREADS_ON_CPU` threads
    where the network runs on the CPU.
    """
    on_cpu = device_type(predictor.spec.device) == "cpu"
    with _opencv_threads(OPENCV_THREADS_ON_CPU) if on_cpu else nullcontext():
        batches = _batches(_decoded(items, workers, lookahead), predictor.batch_size)
        if streams <= 1:
            for group in batches:
                yield from _predict_group(predictor, group)
            return
        with ThreadPoolExecutor(max_workers=streams, thread_name_prefix="hemoscan-stream") as pool:
            pending: deque[Future[list[ScannedTile]]] = deque()
            for group in batches:
                pending.append(pool.submit(lambda g: list(_predict_group(predictor, g)), group))
                if len(pending) > BATCHES_AHEAD_PER_STREAM * streams:
                    yield from pending.popleft().result()
            while pending:
                yield from pending.popleft().result()


@contextmanager
def _opencv_threads(threads: int) -> Iterator[None]:
    """OpenCV limited to ``threads`` threads inside the block, its setting restored after."""
    before = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        yield
    finally:
        cv2.setNumThreads(before)


def _batches(decoded: Iterable[Decoded], batch_size: int) -> Iterator[list[Decoded]]:
    """Consecutive decoded items, cut after every ``batch_size`` images (failed reads ride
    along with the batch they fall in)."""
    group: list[Decoded] = []
    images = 0
    for item in decoded:
        group.append(item)
        images += item.image is not None
        if images >= batch_size:
            yield group
            group, images = [], 0
    if group:
        yield group


def _fixed_scale(predictor: Predictor, source: TileSource) -> FixedScale | None:
    """The scale ``source`` must be analysed at, or ``None`` for the predictor's own: a slide
    region is already at the model's pixel size (times a given ``--scale``); a tile settled on
    its sample's consensus carries it."""
    if source.region is not None:
        return predictor.spec.given_scale, "slide-mpp"
    if source.scale is not None:
        return source.scale, source.scale_source
    return None


def _predict_group(predictor: Predictor, group: list[Decoded]) -> Iterator[ScannedTile]:
    """Results of decoded items holding at most one batch of images, in their order."""
    decoded = [(src, image) for src, image, _, _ in group if image is not None]
    found: Iterator = iter(())
    failure: Exception | None = None
    per_tile_ms = 0.0
    if decoded:
        t0 = time.perf_counter()
        try:
            found = iter(predictor.predict_scaled(
                [image for _, image in decoded],
                [_fixed_scale(predictor, src) for src, _ in decoded],
            ))  # fmt: skip
        except Exception as e:  # noqa: BLE001 - record the batch as failed, go on
            log.exception("inference failed")
            failure = e
        per_tile_ms = (time.perf_counter() - t0) * 1000 / len(decoded)
    for src, image, error, decode_ms in group:
        if image is None:
            result = TileResult(src.sample, src.name, "error", error=error, ms=decode_ms)
        elif failure is not None:
            w, h, _ = src.place(image.shape[1], image.shape[0], ())
            result = TileResult(src.sample, src.name, "error", w, h,
                                error=f"{src.name}: inference failed: {failure!r}")  # fmt: skip
            image = None
        else:
            prediction = next(found)
            w, h, dets = src.place(image.shape[1], image.shape[0], prediction.detections)
            near = src.place(image.shape[1], image.shape[0], prediction.near_misses)[2]
            qc = _tile_qc(src, image, prediction.detections, prediction.scale.scale)
            result = TileResult(src.sample, src.name, "ok", w, h, dets,
                                ms=decode_ms + per_tile_ms, scale=prediction.scale, qc=qc,
                                near_misses=near)  # fmt: skip
        yield ScannedTile(src, result, image)


def _tile_qc(
    src: TileSource, image: np.ndarray, detections: list[Detection], scale: float
) -> TileQC | None:
    """The tile's image-quality measurements (at the model's scale), or ``None`` if they cannot
    be made: a quality check never fails a tile."""
    try:
        return tile_qc(image, detections, scale)
    except Exception:  # noqa: BLE001
        log.warning("%s: image-quality measurement failed", src.name, exc_info=True)
        return None
