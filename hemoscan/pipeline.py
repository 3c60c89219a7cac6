"""``scan``: the one function behind ``hemoscan scan``, notebooks and future engines.

Tiles are decoded in a thread pool (``workers``) ahead of inference, predicted in batches,
and each finished tile is appended to the output folder at once (see
:mod:`hemoscan.io.scan_store`), so a killed run resumes where it stopped.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hemoscan import __version__
from hemoscan.datamodel import Provenance, SampleFindings, TileResult
from hemoscan.errors import HemoscanError
from hemoscan.inference.aggregate import aggregate
from hemoscan.io.files import atomic_write_json
from hemoscan.io.images import read_tile
from hemoscan.io.scan_store import (
    SUMMARY,
    ScanStore,
    iter_detections,
    read_results,
    read_tiles,
    utc_now,
)
from hemoscan.io.sources import TileSource, expand_sources
from hemoscan.models.loading import DEFAULT_MODEL, LoadedModel, load_model

if TYPE_CHECKING:
    from hemoscan.inference.predictor import Predictor
    from hemoscan.models.export import OnnxModel

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("geojson", "coco")
SUMMARY_FORMAT = "hemoscan-summary/1"


@dataclass(frozen=True)
class ScanOptions:
    """Settings of a scan; ``None`` means the model config's value.

    ``backend``: ``"torch"`` or ``"onnx"`` (onnxruntime on the CPU; ``model`` must then name a
    folder holding an ONNX export, see ``hemoscan export``). Both give the same detections
    within 1e-4, so a scan may be resumed with the other backend.
    """

    model: str = DEFAULT_MODEL
    batch_size: int = 1
    workers: int = 2
    conf: float | None = None
    device: str = "cpu"
    sample_id: str | None = None
    tile_size: int | None = None
    overlap: int | None = None
    scale: float = 1.0
    save_overlays: bool = False
    save_crops: bool = False
    exports: tuple[str, ...] = ()
    retry_failed: bool = False
    backend: str = "torch"


@dataclass
class ScanSummary:
    """What one call of :func:`scan` did, and the findings of every sample in the folder."""

    out_dir: Path
    tiles_total: int
    tiles_scanned_now: int
    tiles_skipped: int
    tiles_failed: int
    seconds: float
    samples: list[SampleFindings] = field(default_factory=list)

    @property
    def tiles_per_second(self) -> float:
        return self.tiles_scanned_now / self.seconds if self.seconds else 0.0


def _decode(source: TileSource) -> tuple[TileSource, np.ndarray | None, str, float]:
    start = time.perf_counter()
    try:
        image, error = read_tile(source.path), ""
    except HemoscanError as e:
        image, error = None, str(e)
    except Exception as e:  # noqa: BLE001 - a scan records every failure and goes on
        image, error = None, f"{source.path}: unexpected error while reading: {e!r}"
    return source, image, error, (time.perf_counter() - start) * 1000


def _decoded(sources: list[TileSource], workers: int, lookahead: int) -> Iterator[tuple]:
    """Decode ``sources`` in order with ``workers`` threads, at most ``lookahead`` ahead."""
    if workers <= 0:
        yield from map(_decode, sources)
        return
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[Future] = deque()
        it = iter(sources)
        for source in it:
            pending.append(pool.submit(_decode, source))
            if len(pending) >= lookahead:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _tiling_settings(predictor: Predictor) -> dict[str, float]:
    return {
        "tile_size": predictor.tile_size,
        "overlap": predictor.overlap,
        "scale": predictor.scale,
    }


def scan(
    sources: Sequence[str],
    out_dir: str | Path,
    options: ScanOptions = ScanOptions(),
    model: LoadedModel | OnnxModel | None = None,
    progress: Callable[[TileResult], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> ScanSummary:
    """Scan image tiles into ``out_dir`` and return the per-sample findings.

    ``sources`` are files, folders, globs or ``.txt`` lists (see
    :func:`hemoscan.io.sources.expand_sources`). Tiles already finished in ``out_dir`` are
    skipped. ``progress`` is called after each tile; ``on_start(total, to_scan)`` once.
    Raises :class:`~hemoscan.errors.HemoscanError` for unusable sources, models or folders;
    a bad tile never raises: it is recorded in ``tiles.csv`` with its reason.
    """
    from hemoscan.inference.backends import BACKENDS
    from hemoscan.inference.predictor import Predictor

    if options.backend not in BACKENDS:
        raise HemoscanError(f"unknown backend {options.backend!r}; choose from {BACKENDS}")
    unknown = set(options.exports) - set(EXPORT_FORMATS)
    if unknown:
        raise HemoscanError(
            f"unknown export format(s) {sorted(unknown)}; choose from {EXPORT_FORMATS}"
        )
    out = Path(out_dir)
    tiles = expand_sources(sources, options.sample_id)
    if model is None and options.backend == "onnx":
        from hemoscan.models.export import load_onnx_model

        model = load_onnx_model(options.model)
    model = model or load_model(options.model)
    predictor = Predictor(
        model,
        device=options.device,
        batch_size=options.batch_size,
        conf=options.conf,
        tile_size=options.tile_size,
        overlap=options.overlap,
        scale=options.scale,
        backend=options.backend,
    )
    tiling = _tiling_settings(predictor)
    settings = {"model_name": model.config.name, "model_sha256": model.sha256,
                "thresholds": predictor.thresholds, **tiling}  # fmt: skip
    started = time.perf_counter()
    with ScanStore(out, settings, retry_failed=options.retry_failed) as store:
        todo = [t for t in tiles if not store.is_finished(t.sample, t.path)]
        if on_start:
            on_start(len(tiles), len(todo))
        lookahead = max(2 * options.batch_size, 2 * max(options.workers, 1))
        batch: list[tuple[TileSource, np.ndarray, float]] = []

        def finish(result: TileResult, image: np.ndarray | None = None) -> None:
            if image is not None and result.ok:
                _save_evidence(out, options, result, image)
            store.append(result)
            if progress:
                progress(result)

        def flush() -> None:
            if not batch:
                return
            t0 = time.perf_counter()
            try:
                found = predictor.predict_batch([img for _, img, _ in batch])
            except Exception as e:  # noqa: BLE001 - record the batch as failed, go on
                log.exception("inference failed")
                for src, img, _ in batch:
                    finish(TileResult(src.sample, src.path, "error", img.shape[1], img.shape[0],
                                      error=f"{src.path}: inference failed: {e!r}"))  # fmt: skip
                batch.clear()
                return
            per_tile_ms = (time.perf_counter() - t0) * 1000 / len(batch)
            for (src, img, decode_ms), dets in zip(batch, found):
                h, w = img.shape[:2]
                result = TileResult(src.sample, src.path, "ok", w, h, tuple(dets),
                                    ms=decode_ms + per_tile_ms)  # fmt: skip
                finish(result, img)
            batch.clear()

        for src, image, error, decode_ms in _decoded(todo, options.workers, lookahead):
            if image is None:
                finish(TileResult(src.sample, src.path, "error", error=error, ms=decode_ms))
                continue
            batch.append((src, image, decode_ms))
            if len(batch) >= options.batch_size:
                flush()
        flush()
        started_at = store.started_at
    seconds = time.perf_counter() - started
    provenance = Provenance(
        hemoscan_version=__version__,
        model_name=model.config.name,
        model_version=model.config.version,
        model_sha256=model.sha256,
        thresholds=predictor.thresholds,
        settings={**tiling, "backend": options.backend},
        started_at=started_at,
        finished_at=utc_now(),
    )
    findings = write_summary(out, provenance)
    if options.exports:
        export(out, options.exports)
    all_tiles = read_tiles(out)
    return ScanSummary(
        out_dir=out,
        tiles_total=len(tiles),
        tiles_scanned_now=len(todo),
        tiles_skipped=len(tiles) - len(todo),
        tiles_failed=sum(1 for t in all_tiles if not t.ok),
        seconds=seconds,
        samples=findings,
    )


def _save_evidence(out: Path, options: ScanOptions, result: TileResult, image: np.ndarray) -> None:
    from hemoscan.visualize import save_crops, save_overlay

    if options.save_overlays:
        save_overlay(out, result.tile, image, result.detections)
    if options.save_crops:
        save_crops(out, result.sample, result.tile, image, result.detections)


def write_summary(out: Path, provenance: Provenance) -> list[SampleFindings]:
    """Aggregate the whole folder (streaming) and write ``summary.json`` atomically."""
    findings = aggregate(
        ((t.sample, t.ok) for t in read_tiles(out)),
        ((sample, det) for sample, _, det in iter_detections(out)),
        provenance,
    )
    atomic_write_json(
        out / SUMMARY,
        {"format": SUMMARY_FORMAT, "samples": [f.to_dict() for f in findings]},
        indent=2,
    )
    return findings


def export(out: Path, formats: Sequence[str]) -> list[Path]:
    """Write the requested exports of a finished scan folder."""
    from hemoscan.io.exports import write_coco, write_geojson

    results = read_results(out)
    written: list[Path] = []
    if "geojson" in formats:
        written += write_geojson(results, out)
    if "coco" in formats:
        written += list(write_coco(results, out))
    return written
