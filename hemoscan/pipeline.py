"""``scan``: the one function behind ``hemoscan scan``, notebooks and future engines.

The options are resolved once (:func:`hemoscan.scan_spec.resolve_scan`); an engine
(:mod:`hemoscan.engines`) decodes and predicts the tiles, streamed (never held in a list),
and ``scan`` writes the results in input order as they come (see
:mod:`hemoscan.io.scan_store`), so a killed run resumes where it stopped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from hemoscan import __version__
from hemoscan.datamodel import Provenance, SampleFindings, TileResult
from hemoscan.engines.dask_engine import scan_on_dask
from hemoscan.engines.local import ScannedTile, decode, scan_locally
from hemoscan.inference.aggregate import aggregate
from hemoscan.inference.backends import AnyModel
from hemoscan.inference.predictor import Predictor
from hemoscan.inference.scale import AUTO, scale_summary
from hemoscan.inference.seams import SeamSuppressor
from hemoscan.inference.slide_plan import ScanUnits
from hemoscan.io.files import atomic_write_json
from hemoscan.io.regions import parse_region_name
from hemoscan.io.result_exports import write_coco, write_geojson
from hemoscan.io.scan_files import (
    SUMMARY,
    iter_detections,
    iter_tiles,
    read_results,
    read_run,
    utc_now,
)
from hemoscan.io.scan_store import ScanStore, guard_writes
from hemoscan.io.sources import TileSource, TileSources
from hemoscan.io.tile_records import TileRecords, iter_tile_qc
from hemoscan.qc import QCThresholds, samples_qc, tile_flags
from hemoscan.scan_spec import ScanOptions, ScanSpec, resolve_scan
from hemoscan.visualize import CROP_CLASSES, save_crops, save_overlay

__all__ = ["ScanOptions", "ScanSummary", "export", "scan", "write_summary"]

SUMMARY_FORMAT = "hemoscan-summary/1"


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


def scan(
    sources: Sequence[str],
    out_dir: str | Path,
    options: ScanOptions = ScanOptions(),
    model: AnyModel | None = None,
    progress: Callable[[TileResult], None] | None = None,
    on_start: Callable[[int, int], None] | None = None,
) -> ScanSummary:
    """Scan image tiles into ``out_dir`` and return the per-sample findings.

    ``sources`` are files, folders, globs or ``.txt`` lists (see
    :func:`hemoscan.io.sources.expand_sources`); whole-slide images among them are scanned
    region by region (:class:`hemoscan.inference.slide_plan.ScanUnits`), each region like a
    tile. ``model``: a loaded model or export to scan with instead of ``options.model``.
    Tiles already finished in ``out_dir`` are skipped. ``progress`` is called after each
    tile; ``on_start(total, to_scan)`` once.
    Raises :class:`~hemoscan.errors.HemoscanError` for unusable sources, models, settings or
    folders (sources and a model name that name nothing before any model is loaded); a bad
    tile never raises: it is recorded in ``tiles.csv`` with its reason.
    """
    out = Path(out_dir)
    tiles = TileSources(sources, options.sample_id)
    tiles.check()  # sources that name nothing fail before the model loads
    spec, model = resolve_scan(options, model, out)
    predictor = Predictor(model, spec.predictor)
    units = ScanUnits(tiles, model.config, spec.predictor.tile_size, spec.predictor.overlap,
                      spec.predictor.given_scale, mpp=options.mpp,
                      sample_id=options.sample_id)  # fmt: skip
    slides = units.plans
    started = time.perf_counter()
    # The store holds the folder's lock until the summary and exports are written.
    with (
        ScanStore(out, spec.run_settings(), retry_failed=options.retry_failed) as store,
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
        _record(out, store, options, _predictions(todo, predictor, spec), progress,
                unsettled if spec.predictor.scale == AUTO else None, seams, records)  # fmt: skip
        if unsettled:
            store.sync()
            consensus = {s: v["consensus"] for s, v in scale_summary(iter_tiles(out)).items()}
            settled = (_settle(src, consensus.get(src.sample)) for src in unsettled)
            _record(out, store, options, _predictions(settled, predictor, spec), progress,
                    None, seams, records)  # fmt: skip
        store.sync()
        seconds = time.perf_counter() - started
        provenance = Provenance(
            hemoscan_version=__version__,
            model_name=spec.predictor.model_name,
            model_version=spec.predictor.model_version,
            model_sha256=spec.predictor.model_sha256,
            thresholds=dict(spec.predictor.thresholds),
            settings=spec.provenance_settings(),
            started_at=store.started_at,
            finished_at=utc_now(),
            model_config_sha256=spec.predictor.config_sha256,
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
    todo: Iterable[TileSource], predictor: Predictor, spec: ScanSpec
) -> Iterator[ScannedTile]:
    """``todo`` scanned by the engine the options name, in input order."""
    if spec.options.engine == "dask":
        return scan_on_dask(todo, spec)
    return scan_locally(todo, predictor, spec)


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
                    image = decode(source).image
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
    return any(d.label in CROP_CLASSES for d in result.detections)


def _save_evidence(
    out: Path, options: ScanOptions, result: TileResult, image: np.ndarray, source: TileSource
) -> None:
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
    """Write the requested result exports (:data:`~hemoscan.choices.RESULT_FORMATS`) of a
    finished scan folder."""
    results = read_results(out)
    slides = read_run(out).get("slides", [])
    written: list[Path] = []
    if "geojson" in formats:
        written += write_geojson(results, out)
    if "coco" in formats:
        written += list(write_coco(results, out, slides))
    return written
