"""``scan``: the one function behind ``hemoscan scan``, notebooks and future engines.

Sources are streamed (never held in a list), decoded in a thread pool (``workers``) ahead of
inference, predicted in batches by ``streams`` concurrent threads, and written in input order
as they finish (see :mod:`hemoscan.io.scan_store`), so a killed run resumes where it stopped.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from hemoscan import __version__
from hemoscan.datamodel import Detection, Provenance, SampleFindings, TileQC, TileResult
from hemoscan.errors import HemoscanError
from hemoscan.inference.aggregate import aggregate
from hemoscan.inference.scale import AUTO, scale_summary
from hemoscan.inference.seams import SeamSuppressor
from hemoscan.io.files import atomic_write_json
from hemoscan.io.regions import parse_region_name
from hemoscan.io.scan_store import (
    SUMMARY,
    ScanStore,
    guard_writes,
    iter_detections,
    iter_tiles,
    read_results,
    read_run,
    utc_now,
)
from hemoscan.io.sources import TileSource, TileSources, read_source
from hemoscan.io.tile_records import TileRecords, iter_tile_qc
from hemoscan.models.loading import DEFAULT_MODEL, LoadedModel, load_model
from hemoscan.qc import QCThresholds, samples_qc, tile_flags, tile_qc

if TYPE_CHECKING:
    from hemoscan.inference.predictor import Predictor
    from hemoscan.models.export import OnnxModel

log = logging.getLogger(__name__)

EXPORT_FORMATS = ("geojson", "coco")
ENGINES = ("local", "dask")
SUMMARY_FORMAT = "hemoscan-summary/1"


@dataclass(frozen=True)
class ScanOptions:
    """Settings of a scan; ``None`` means the model config's value.

    ``backend``: ``"torch"`` or ``"onnx"`` (onnxruntime on the CPU; ``model`` must then name a
    folder holding an ONNX export, see ``hemoscan export``). Both give the same detections
    within 1e-4, so a scan may be resumed with the other backend; an int8 export
    (``hemoscan export --quantize int8``) does not, so its scans record ``quantization`` in
    their settings and provenance, and resuming across a change of it is refused.

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
    backend: str = "torch"
    engine: str = "local"
    scheduler: str | None = None
    mpp: float | None = None
    streams: int | None = None
    qc: QCThresholds = QCThresholds()


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
    regions_background: int = 0  # regions of whole-slide images skipped as blank glass

    @property
    def tiles_per_second(self) -> float:
        return self.tiles_scanned_now / self.seconds if self.seconds else 0.0


#: A source after reading: ``(source, HWC uint8 RGB image or None, error, milliseconds)``.
Decoded = tuple[TileSource, "np.ndarray | None", str, float]


def _decode(source: TileSource) -> Decoded:
    start = time.perf_counter()
    try:
        image, error = read_source(source), ""
    except HemoscanError as e:
        image, error = None, str(e)
    except Exception as e:  # noqa: BLE001 - a scan records every failure and goes on
        image, error = None, f"{source.name}: unexpected error while reading: {e!r}"
    return source, image, error, (time.perf_counter() - start) * 1000


def _decoded(sources: Iterable[TileSource], workers: int, lookahead: int) -> Iterator[Decoded]:
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


class ScannedTile(NamedTuple):
    """One work item's outcome as an engine hands it to :func:`scan` (in input order).

    ``image`` is the decoded tile for evidence (crops, overlays), or ``None`` when the tile
    failed or was decoded elsewhere (a Dask worker): :func:`scan` then re-reads it if needed.
    """

    source: TileSource
    result: TileResult
    image: np.ndarray | None


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
    own threads. Yields one :class:`ScannedTile` per item, in input order (a failed tile waits
    for the batch before it). A tile that cannot be read, or whose batch fails in inference, is
    an ``error`` result, never an exception.
    """
    batches = _batches(_decoded(items, workers, lookahead), predictor.batch_size)
    if streams <= 1:
        for group in batches:
            yield from _predict_group(predictor, group)
        return
    with ThreadPoolExecutor(max_workers=streams, thread_name_prefix="hemoscan-stream") as pool:
        pending: deque[Future[list[ScannedTile]]] = deque()
        for group in batches:
            pending.append(pool.submit(lambda g: list(_predict_group(predictor, g)), group))
            if len(pending) > streams:
                yield from pending.popleft().result()
        while pending:
            yield from pending.popleft().result()


def _batches(decoded: Iterable[Decoded], batch_size: int) -> Iterator[list[Decoded]]:
    """Consecutive decoded items, cut after every ``batch_size`` images (failed reads ride
    along with the batch they fall in)."""
    group: list[Decoded] = []
    images = 0
    for item in decoded:
        group.append(item)
        images += item[1] is not None
        if images >= batch_size:
            yield group
            group, images = [], 0
    if group:
        yield group


def _fixed_scale(predictor: Predictor, source: TileSource) -> tuple[float, str] | None:
    """The scale ``source`` must be analysed at, or ``None`` for the predictor's own: a slide
    region is already at the model's pixel size (times a given ``--scale``); a tile settled on
    its sample's consensus carries it."""
    if source.region is not None:
        factor = predictor.scale if isinstance(predictor.scale, float) else 1.0
        return factor, "slide-mpp"
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


def _tiling_settings(predictor: Predictor) -> dict[str, float | str]:
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
    :func:`hemoscan.io.sources.expand_sources`); whole-slide images among them are scanned
    region by region (:class:`hemoscan.inference.slide_plan.ScanUnits`), each region like a
    tile. Tiles already finished in ``out_dir`` are skipped. ``progress`` is called after each tile; ``on_start(total, to_scan)`` once.
    Raises :class:`~hemoscan.errors.HemoscanError` for unusable sources, models or folders;
    a bad tile never raises: it is recorded in ``tiles.csv`` with its reason.
    """
    from hemoscan.inference.backends import BACKENDS, cpu_cores, default_streams, resolve_device
    from hemoscan.inference.predictor import Predictor
    from hemoscan.inference.slide_plan import ScanUnits

    if options.backend not in BACKENDS:
        raise HemoscanError(f"unknown backend {options.backend!r}; choose from {BACKENDS}")
    if options.engine not in ENGINES:
        raise HemoscanError(f"unknown engine {options.engine!r}; choose from {ENGINES}")
    if options.scheduler and options.engine != "dask":
        raise HemoscanError("a Dask scheduler address needs the dask engine (--engine dask)")
    unknown = set(options.exports) - set(EXPORT_FORMATS)
    if unknown:
        raise HemoscanError(
            f"unknown export format(s) {sorted(unknown)}; choose from {EXPORT_FORMATS}"
        )
    if options.streams is not None and options.streams < 1:
        raise HemoscanError(f"streams must be at least 1 (got {options.streams})")
    out = Path(out_dir)
    tiles = TileSources(sources, options.sample_id)
    device = resolve_device(options.device, options.backend)
    streams = options.streams or default_streams(options.backend, device)
    if model is None and options.backend == "onnx":
        from hemoscan.models.export import load_onnx_model

        model = load_onnx_model(options.model, threads=max(1, cpu_cores() // streams))
    model = model or load_model(options.model)
    predictor = Predictor(
        model,
        device=device,
        batch_size=options.batch_size,
        conf=options.conf,
        tile_size=options.tile_size,
        overlap=options.overlap,
        scale=options.scale,
        backend=options.backend,
    )
    slide_scale = predictor.scale if isinstance(predictor.scale, float) else 1.0
    units = ScanUnits(tiles, model.config, predictor.tile_size, predictor.overlap,
                      slide_scale, mpp=options.mpp, sample_id=options.sample_id)  # fmt: skip
    slides = units.plans
    tiling = _tiling_settings(predictor)
    settings = {"model_name": model.config.name, "model_sha256": model.sha256,
                "thresholds": predictor.thresholds, **tiling, "mpp": options.mpp,
                "quantization": predictor.quantization}  # fmt: skip
    started = time.perf_counter()
    # The store holds the folder's lock until the summary and exports are written.
    with (
        ScanStore(out, settings, retry_failed=options.retry_failed) as store,
        TileRecords(out, store.is_finished, lambda m: tile_flags(m, options.qc)) as records,
    ):
        store.record_slides([plan.to_dict() for plan in slides])
        total = to_scan = 0
        for unit in units:  # a counting pass: sources are streamed, never held in a list
            total += 1
            to_scan += not store.is_finished(unit.sample, unit.name)
        if on_start:
            on_start(total, to_scan)
        todo = (t for t in units if not store.is_finished(t.sample, t.name))
        seams = _seam_suppressor(out, finished=total - to_scan) if slides else None
        # tiles too poor in cells to measure their own scale wait for their sample's consensus
        unsettled: list[TileSource] = []
        _record(out, store, options, _predictions(todo, predictor, model, options, streams),
                progress, unsettled if predictor.scale == AUTO else None, seams, records)  # fmt: skip
        if unsettled:
            store.sync()
            consensus = {s: v["consensus"] for s, v in scale_summary(iter_tiles(out)).items()}
            settled = (_settle(src, consensus.get(src.sample)) for src in unsettled)
            _record(out, store, options, _predictions(settled, predictor, model, options, streams),
                    progress, None, seams, records)  # fmt: skip
        store.sync()
        seconds = time.perf_counter() - started
        provenance = Provenance(
            hemoscan_version=__version__,
            model_name=model.config.name,
            model_version=model.config.version,
            model_sha256=model.sha256,
            thresholds=predictor.thresholds,
            settings={**tiling, "backend": options.backend, "quantization": predictor.quantization},
            started_at=store.started_at,
            finished_at=utc_now(),
            model_config_sha256=model.config_sha256,
        )
        with guard_writes(out):
            findings = write_summary(out, provenance, options.qc)
            if options.exports:
                export(out, options.exports)
    return ScanSummary(
        out_dir=out,
        tiles_total=total,
        tiles_scanned_now=to_scan,
        tiles_skipped=total - to_scan,
        tiles_failed=sum(f.tiles_failed for f in findings),
        seconds=seconds,
        samples=findings,
        regions_background=sum(plan.regions_background for plan in slides),
    )


def _predictions(
    todo: Iterable[TileSource],
    predictor: Predictor,
    model: LoadedModel | OnnxModel,
    options: ScanOptions,
    streams: int,
) -> Iterator[ScannedTile]:
    """``todo`` scanned by the engine ``options`` name, in input order."""
    if options.engine == "dask":
        from hemoscan.engines.dask_engine import scan_on_dask

        return scan_on_dask(todo, predictor, model, options)
    lookahead = max(2 * streams * predictor.batch_size, 2 * max(options.workers, 1))
    return scan_items(predictor, todo, options.workers, lookahead, streams)


def _record(
    out: Path,
    store: ScanStore,
    options: ScanOptions,
    results: Iterator[ScannedTile],
    progress: Callable[[TileResult], None] | None,
    unsettled: list[TileSource] | None,
    seams: SeamSuppressor | None,
    records: TileRecords,
) -> None:
    """Store each result with its evidence; with ``unsettled`` (a list), hold back instead
    the tiles whose scale could not be estimated (source ``default``), to be settled on their
    sample's consensus. Slide regions' cells pass the ``seams`` suppressor first."""
    with closing(results):
        for source, result, image in results:
            if seams is not None and source.region is not None and result.ok:
                r = source.region
                core = (r.core_x0, r.core_y0, r.core_x1, r.core_y1)
                result = replace(result, detections=seams.admit(r.slide, core, result.detections))
            if (
                unsettled is not None
                and result.scale is not None
                and result.scale.source == "default"
            ):
                unsettled.append(source)
                continue
            if result.ok and _wants_evidence(options, result):
                if image is None:  # decoded on a Dask worker: read it again here
                    image = _decode(source)[1]
                if image is not None:
                    with guard_writes(out):
                        _save_evidence(out, options, result, image, source)
            records.append(result)
            store.append(result)
            if progress:
                progress(result)


def _seam_suppressor(out: Path, finished: int) -> SeamSuppressor:
    """A seam suppressor that knows the cells of the slide regions a resumed scan finished."""
    seams = SeamSuppressor()
    if finished:
        for _, tile, det in iter_detections(out):
            region = parse_region_name(tile)
            if region is not None:
                slide, x, y, w, h = region
                seams.remember(slide, (x, y, x + w, y + h), [det])
    return seams


def _settle(source: TileSource, consensus: float | None) -> TileSource:
    """``source`` fixed at its sample's ``consensus`` scale, or at 1 (``default``) without one."""
    if consensus is None:
        return replace(source, scale=1.0, scale_source="default")
    return replace(source, scale=consensus, scale_source="sample")


def _wants_evidence(options: ScanOptions, result: TileResult) -> bool:
    """Whether ``result`` gets an overlay or a crop, so its image is needed."""
    if options.save_overlays or not options.save_crops:
        return options.save_overlays
    from hemoscan.visualize import CROP_CLASSES

    return any(d.label in CROP_CLASSES for d in result.detections)


def _save_evidence(
    out: Path, options: ScanOptions, result: TileResult, image: np.ndarray, source: TileSource
) -> None:
    from hemoscan.visualize import save_crops, save_overlay

    if source.region is not None:  # draw on the region's image: its pixels, not the slide's
        result = replace(result, detections=source.region.to_image(result.detections))

    if options.save_overlays:
        save_overlay(out, result.tile, image, result.detections)
    if options.save_crops:
        save_crops(out, result.sample, result.tile, image, result.detections)


def write_summary(
    out: Path, provenance: Provenance, qc: QCThresholds = QCThresholds()
) -> list[SampleFindings]:
    """Aggregate the whole folder (streaming), judge each sample's image quality under ``qc``,
    and write ``summary.json`` atomically."""
    findings = aggregate(
        ((t.sample, t.ok) for t in iter_tiles(out)),
        ((sample, det) for sample, _, det in iter_detections(out)),
        provenance,
    )
    scales = scale_summary(iter_tiles(out))
    findings = [replace(f, scale=scales.get(f.sample)) for f in findings]
    checks = samples_qc(findings, iter_tile_qc(out), qc)
    findings = [replace(f, qc=checks[f.sample]) for f in findings]
    doc = {"format": SUMMARY_FORMAT, "samples": [f.to_dict() for f in findings]}
    slides = read_run(out).get("slides")
    if slides:
        doc["slides"] = slides
    atomic_write_json(out / SUMMARY, doc, indent=2)
    return findings


def export(out: Path, formats: Sequence[str]) -> list[Path]:
    """Write the requested exports of a finished scan folder."""
    from hemoscan.io.exports import write_coco, write_geojson

    results = read_results(out)
    slides = read_run(out).get("slides", [])
    written: list[Path] = []
    if "geojson" in formats:
        written += write_geojson(results, out)
    if "coco" in formats:
        written += list(write_coco(results, out, slides))
    return written
