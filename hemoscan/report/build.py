"""Assemble a :class:`SampleReport` per sample from a scan folder and an optional lab file.

All numbers are computed here; templates only lay them out. A report reads like the document
a pathologist signs: the result first (rate with its interval, cells assessed, what the
hemophagocytes hold, the marrow item and its basis), then the image-quality flags, then the
scores, the evidence, and provenance last.
"""

from __future__ import annotations

import difflib
import heapq
import json
from collections import defaultdict
from dataclasses import dataclass, field, replace
from decimal import Decimal
from pathlib import Path
from typing import Any

from hemoscan.datamodel import Detection, SampleFindings, SampleQC
from hemoscan.errors import HemoscanError
from hemoscan.io.regions import parse_region_name
from hemoscan.io.scan_files import SUMMARY, iter_detections, read_run, read_tiles, utc_now
from hemoscan.io.tile_records import iter_near_misses, iter_tile_qc
from hemoscan.labs.panel import LabPanel
from hemoscan.labs.readers import iter_lab_panels
from hemoscan.qc import QCThresholds, samples_qc
from hemoscan.report.evidence import EvidenceCrop, collect_crops
from hemoscan.report.plots import bar_chart_svg, histogram_svg
from hemoscan.review.log import REVIEW_LOG, ReviewError
from hemoscan.review.status import ClassReview, SampleReview, read_review_status
from hemoscan.scores import (
    MarrowItem,
    MarrowRule,
    ScoreSettings,
    compute_all,
    gars_research_context,
    marrow_item,
)
from hemoscan.scores.hlh2004 import MARROW_ITEM as HLH2004_MARROW_ITEM
from hemoscan.scores.hscore import MARROW_ITEM as HSCORE_MARROW_ITEM
from hemoscan.scores.summary import summary_lines
from hemoscan.stats import wilson_interval
from hemoscan.visualize import overlay_path

RESEARCH_USE = (
    "hemoscan's image findings are automated suggestions for a pathologist to "
    "confirm against the cells shown; they are not a diagnosis. Scores are computed from the lab values "
    "given, as published; they support, and do not replace, clinical judgement."
)

#: ``SampleReport.labs``: the sample's lab panel was found, is missing from the lab file, or no
#: lab file was given.
LABS_MATCHED, LABS_MISSING, LABS_NOT_GIVEN = "matched", "missing", "not given"


@dataclass(frozen=True)
class ScoreView:
    """One score as the report shows it.

    ``text`` is its one-line result exactly as ``hemoscan scores`` words it, with the marrow
    item in its state; ``text_without`` (and ``data_without``) the same without the image's
    suggestion, only for a score that uses the marrow item while the image suggests it present
    (otherwise the two are the same). ``data`` is the score's ``to_dict()``.
    """

    key: str
    title: str
    name: str
    text: str
    data: dict[str, Any]
    text_without: str = ""
    data_without: dict[str, Any] | None = None


@dataclass(frozen=True)
class ReviewVerdict:
    """A reviewer's verdict shown in the sign-off block (from ``review.jsonl``)."""

    subject: str
    verdict: str
    note: str = ""


def _unreviewed(f: SampleFindings) -> SampleReview:
    """The review of a sample nobody has reviewed: every suggestion pending."""
    classes = {c: ClassReview(suggested=f.counts.get(c, 0), pending=f.counts.get(c, 0))
               for c in ("hemophagocyte", "macrophage")}  # fmt: skip
    return SampleReview(f.sample, classes)


def review_verdicts(review: SampleReview) -> list[ReviewVerdict]:
    """The sign-off block's rows: per class what the reviewers confirmed, rejected and left."""
    rows = []
    for label, r in review.classes.items():
        state = "complete" if r.complete else f"{r.pending} pending"
        rows.append(ReviewVerdict(f"{label}s suggested: {r.suggested}",
                                  f"{r.confirmed} confirmed, {r.rejected} rejected",
                                  f"review {state}"))  # fmt: skip
    if review.added or review.artefacts:
        rows.append(ReviewVerdict("cells reviewers changed", f"{review.added} added",
                                  f"{review.artefacts} suggestion(s) called artefacts"))  # fmt: skip
    return rows


@dataclass
class SampleReport:
    sample: str
    findings: SampleFindings
    rate_ci_per_1000: tuple[float, float] | None
    failed_tiles: list[tuple[str, str]]
    gallery: list[EvidenceCrop]
    borderline: list[EvidenceCrop]
    plots: dict[str, str]
    marrow: MarrowItem | None = None
    qc: SampleQC | None = None
    near_misses: list[EvidenceCrop] = field(default_factory=list)
    macrophages: list[EvidenceCrop] = field(default_factory=list)
    labs: str = LABS_NOT_GIVEN
    scores: list[ScoreView] = field(default_factory=list)
    research_context: list[str] = field(default_factory=list)
    lab_values: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    review: list[ReviewVerdict] = field(default_factory=list)
    review_status: SampleReview | None = None
    #: Hemophagocytes per 1000 nucleated cells from confirmed counts, and its 95% CI, once any
    #: verdict is recorded (final when ``review_status.classes["hemophagocyte"].complete``).
    confirmed_rate: tuple[float, tuple[float, float]] | None = None
    generated_at: str = field(default_factory=utc_now)
    research_use: str = RESEARCH_USE

    @property
    def marrow_suggested(self) -> bool:
        """Whether the image's rule is met (whatever the pathologist said)."""
        return self.marrow is not None and self.marrow.rule_met

    @property
    def qc_flags(self) -> tuple[str, ...]:
        return self.qc.codes if self.qc else ()

    @property
    def hemophagocyte_review(self) -> ClassReview:
        status = self.review_status or _unreviewed(self.findings)
        return status.classes["hemophagocyte"]

    @property
    def rate_from_review(self) -> bool:
        """Whether the headline rate is the confirmed one: the hemophagocytes' review is
        complete and at least one verdict is recorded."""
        return (self.confirmed_rate is not None and self.review_status is not None
                and self.review_status.started and self.hemophagocyte_review.complete)  # fmt: skip

    @property
    def score_data(self) -> dict[str, dict[str, Any]]:
        """Each score's ``to_dict()`` with the marrow item in its state, by key."""
        return {v.key: v.data for v in self.scores}

    def summary_row(self) -> dict[str, Any]:
        """The sample-level numbers of the index CSV (columns are only ever added)."""
        f = self.findings
        scores = self.score_data
        ci = self.rate_ci_per_1000
        hscore = scores.get("hscore", {})
        return {
            "sample": self.sample,
            "tiles_scanned": f.tiles_scanned,
            "tiles_failed": f.tiles_failed,
            "nucleated_cells_assessed": f.nucleated_cells_assessed,
            "hemophagocytes": f.counts.get("hemophagocyte", 0),
            "macrophages": f.macrophages,
            "hemophagocytes_per_1000_nucleated": f.hemophagocytes_per_1000_nucleated,
            "ci95_low_per_1000": round(ci[0], 3) if ci else None,
            "ci95_high_per_1000": round(ci[1], 3) if ci else None,
            "holding_nucleated": f.hemophagocytes_by_engulfed.get("nucleated", 0),
            "holding_ge2_nucleated": f.hemophagocytes_with_ge2_nucleated,
            "marrow_item_suggested": self.marrow_suggested,
            "hscore_total": hscore.get("total"),
            "hscore_upper": hscore.get("upper"),
            "hlh2004_result": scores.get("hlh2004", {}).get("result"),
            "mas2016_classified": scores.get("mas2016", {}).get("classified"),
            "ms_score": scores.get("ms_score", {}).get("value"),
            "hscore_lower": hscore.get("lower"),
            "marrow_item": self.marrow.label if self.marrow else None,
            "labs": self.labs,
            "qc_flags": ";".join(self.qc_flags),
            "hemophagocytes_confirmed": self.hemophagocyte_review.confirmed,
            "hemophagocytes_rejected": self.hemophagocyte_review.rejected,
            "hemophagocytes_pending": self.hemophagocyte_review.pending,
            "review_complete": (self.review_status or _unreviewed(f)).complete,
            "hemophagocytes_confirmed_per_1000_nucleated":
                round(self.confirmed_rate[0], 3) if self.confirmed_rate else None,
        }


@dataclass
class ReportSet:
    """The reports of a scan and how its samples matched the lab file: ``samples_without_labs``
    (scanned samples no panel names) and ``panels_without_sample`` (panels naming no scanned
    sample, each with the closest sample name, if any)."""

    reports: list[SampleReport]
    samples_without_labs: list[str] = field(default_factory=list)
    panels_without_sample: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def labs_mismatch(self) -> bool:
        return bool(self.samples_without_labs or self.panels_without_sample)


_TITLES = {
    "hscore": "HScore (Fardet 2014)",
    "hlh2004": "HLH-2004 diagnostic criteria (Henter 2007)",
    "mas2016": "2016 EULAR/ACR/PRINTO MAS classification (Ravelli 2016)",
    "ms_score": "MS score (Minoia 2019)",
    "mh_score": "MH score (Minoia 2017)",
    "ferritin_esr": "Ferritin:ESR ratio (Eloseily 2019)",
}


def score_views(panel: Any, marrow: MarrowItem, settings: ScoreSettings) -> list[ScoreView]:
    """Every score of ``panel`` with the marrow item in its state; HScore and HLH-2004 also
    without the image's suggestion when the image suggests the item present."""
    with_item = compute_all(panel, marrow.value if marrow.from_image else None, settings)
    without = compute_all(panel, None, settings) if marrow.from_image else with_item
    data, data_without = with_item.to_dict(), without.to_dict()
    lines_without = {line.key: line.text for line in summary_lines(without)}
    if marrow.state == "not seen":
        for key, name in (("hscore", HSCORE_MARROW_ITEM), ("hlh2004", HLH2004_MARROW_ITEM)):
            for item in data[key]["items"]:
                if item["name"] == name and item["value"] is None:
                    item["note"] = f"{marrow.label} in the scan: unknown, not absent"
    views = []
    for line in summary_lines(with_item):
        split = marrow.from_image and line.uses_marrow
        views.append(ScoreView(line.key, _TITLES[line.key], line.name, line.text, data[line.key],
                               lines_without[line.key] if split else "",
                               data_without[line.key] if split else None))  # fmt: skip
    return views


@dataclass
class _Picks:
    """Per sample, streamed from ``detections.jsonl``: heaps of the best and the weakest
    hemophagocyte calls and of the best macrophages, every hemophagocyte score, and the
    hemophagocytes per tile."""

    top: list[tuple[float, int, str, Detection]] = field(default_factory=list)  # min-heap
    low: list[tuple[float, int, str, Detection]] = field(default_factory=list)  # max-heap
    macrophages: list[tuple[float, int, str, Detection]] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    per_tile: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def _push(heap: list, entry: tuple, size: int) -> tuple | None:  # type: ignore[type-arg]
    """Keep the ``size`` largest entries; return the one pushed out, if any."""
    if len(heap) < size:
        heapq.heappush(heap, entry)
        return None
    return heapq.heappushpop(heap, entry)


def _iou(a: Detection, b: Detection) -> float:
    w = min(a.x2, b.x2) - max(a.x1, b.x1)
    h = min(a.y2, b.y2) - max(a.y1, b.y1)
    inter = max(0.0, w) * max(0.0, h)
    union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter
    return inter / union if union > 0 else 0.0


def _pick_evidence(
    scan_dir: Path,
    n_top: int,
    n_low: int,
    n_macrophages: int,
    near: dict[tuple[str, str], list[Detection]],
    counted_as: dict[int, str],
) -> dict[str, _Picks]:
    """Stream ``detections.jsonl`` once into :class:`_Picks`; also note in ``counted_as``
    (keyed by ``id`` of a near miss in ``near``) the call made at the same place, if any."""
    picks: dict[str, _Picks] = defaultdict(_Picks)
    for i, (sample, tile, det) in enumerate(iter_detections(scan_dir)):
        for miss in near.get((sample, tile), ()):
            if _iou(miss, det) > 0.5:
                counted_as[id(miss)] = f"counted as {det.label} (score {det.score:.3f})"
        p = picks[sample]
        if det.label == "macrophage":
            _push(p.macrophages, (det.score, -i, tile, det), n_macrophages)
            continue
        if det.label != "hemophagocyte":
            continue
        p.scores.append(det.score)
        p.per_tile[tile] += 1
        out = _push(p.top, (det.score, -i, tile, det), n_top)  # the weakest is pushed out
        if out is not None:
            _push(p.low, (-out[0], out[1], out[2], out[3]), n_low)  # keeps the n_low weakest
    return picks


def _best_first(heap: list[tuple[float, int, str, Detection]]) -> list[tuple[str, Detection]]:
    return [(t, d) for _, _, t, d in sorted(heap, key=lambda e: (-e[0], -e[1]))]


def _tile_link(scan_dir: Path, tile: str, base_dirs: list[Path]) -> Path | None:
    """The picture a crop links to: the tile's overlay when the scan saved one, else the tile."""
    overlay = overlay_path(scan_dir, tile)
    if overlay.is_file():
        return overlay.resolve()
    if parse_region_name(tile) is not None:
        return None
    candidates = [Path(tile)] if Path(tile).is_absolute() else [b / tile for b in base_dirs]
    return next((p.resolve() for p in candidates if p.is_file()), None)


def _panel_mismatch(
    samples: list[str], panels: list[str]
) -> tuple[list[str], list[tuple[str, str | None]]]:
    """Samples without a panel; panels without a sample, each with the closest sample name."""
    missing = [s for s in samples if s not in panels]
    unmatched = [(p, next(iter(difflib.get_close_matches(p, missing or samples, 1, 0.6)), None))
                 for p in panels if p not in samples]  # fmt: skip
    return missing, unmatched


def build_report_set(
    scan_dir: str | Path,
    labs: str | Path | None = None,
    marrow_rule: MarrowRule | None = None,
    gallery_size: int = 12,
    borderline_size: int = 6,
    settings: ScoreSettings = ScoreSettings(),
    qc: QCThresholds = QCThresholds(),
    near_miss_size: int = 6,
    macrophage_size: int = 8,
) -> ReportSet:
    """The reports of every sample of ``scan_dir`` (a finished ``hemoscan scan`` folder), with
    the scores of the panels in ``labs`` (under ``settings``) and image-quality checks judged
    under ``qc``; also how the samples and the panels matched."""
    scan_dir = Path(scan_dir)
    try:
        summary = json.loads((scan_dir / SUMMARY).read_text())
        run = read_run(scan_dir)
        findings = [SampleFindings.from_dict(s) for s in summary["samples"]]
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as e:
        raise HemoscanError(f"{scan_dir}: not a finished hemoscan scan folder ({e})") from None
    rule = marrow_rule or MarrowRule()
    wanted = {f.sample for f in findings}  # a large lab file is streamed, its other panels dropped
    panels: dict[str, LabPanel] = {}
    panel_samples: list[str] = []  # to name the panels that match no scanned sample
    for panel in iter_lab_panels(labs) if labs else ():
        panel_samples.append(panel.sample)
        if panel.sample in wanted:
            panels[panel.sample] = panel
    checks = samples_qc(findings, iter_tile_qc(scan_dir), qc)
    failed: dict[str, list[tuple[str, str]]] = defaultdict(list)
    ok_tiles: dict[str, list[str]] = defaultdict(list)
    for t in read_tiles(scan_dir):
        (ok_tiles[t.sample].append(t.tile) if t.ok else failed[t.sample].append((t.tile, t.error)))
    near: dict[str, list[tuple[float, int, str, Detection]]] = defaultdict(list)
    for i, (sample, tile, det) in enumerate(iter_near_misses(scan_dir)):
        _push(near[sample], (det.score, -i, tile, det), near_miss_size)
    near_by_tile: dict[tuple[str, str], list[Detection]] = defaultdict(list)
    for sample, heap in near.items():
        for _, _, tile, det in heap:
            near_by_tile[(sample, tile)].append(det)
    counted_as: dict[int, str] = {}
    picks = _pick_evidence(scan_dir, gallery_size, borderline_size, macrophage_size,
                           near_by_tile, counted_as)  # fmt: skip
    base_dirs = [Path(run.get("working_dir", ".")), Path.cwd()]
    reviews: dict[str, SampleReview] = {}
    review_warnings: list[str] = []
    if (scan_dir / REVIEW_LOG).exists():
        try:
            reviews, unreadable = read_review_status(scan_dir)
            if unreadable:
                review_warnings.append(f"{unreadable} unreadable line(s) of {REVIEW_LOG} ignored")
        except ReviewError as e:
            review_warnings.append(f"{REVIEW_LOG} not used: {e}")

    def crops(picked: list[tuple[str, Detection]], warnings: list[str]) -> list[EvidenceCrop]:
        found, problems = collect_crops(picked, base_dirs)
        warnings += [w for w in problems if w not in warnings]
        return [replace(c, link=_tile_link(scan_dir, c.tile, base_dirs)) for c in found]

    reports = []
    for f in findings:
        p = picks.get(f.sample, _Picks())
        warnings: list[str] = []
        n_hemo = f.counts.get("hemophagocyte", 0)
        ci = None
        if f.nucleated_cells_assessed:
            lo, hi = wilson_interval(n_hemo, f.nucleated_cells_assessed)
            ci = (1000 * lo, 1000 * hi)
        counts = [p.per_tile.get(t, 0) for t in ok_tiles[f.sample]]
        bins = max(counts, default=0) + 1
        plots = {
            "per_tile": bar_chart_svg([sum(1 for c in counts if c == k) for k in range(bins)],
                                      [str(k) for k in range(bins)],
                                      "Tiles by number of hemophagocytes", "hemophagocytes in the tile"),
            "scores": histogram_svg(p.scores, title="Hemophagocyte confidence", xlabel="model score"),
        }  # fmt: skip
        panel = panels.get(f.sample)
        pathologist = panel.flag("marrow_hemophagocytosis") if panel is not None else None
        review = reviews.get(f.sample)
        marrow = marrow_item(f, pathologist, rule)
        confirmed_rate = None
        if review is not None and review.started:
            assessed = review.nucleated_assessed(f.nucleated_cells_assessed)
            n = review.classes["hemophagocyte"].confirmed
            if assessed:
                lo, hi = wilson_interval(n, assessed)
                confirmed_rate = (1000 * n / assessed, (1000 * lo, 1000 * hi))
            if n:
                marrow = _reviewed_marrow(f, review, assessed, pathologist, rule)
        weakest = [(t, d) for _, _, t, d in sorted(p.low, key=lambda e: -e[0])]
        near_picked = _best_first(near[f.sample])
        near_crops = crops(near_picked, warnings)
        report = SampleReport(
            sample=f.sample,
            findings=f,
            rate_ci_per_1000=ci,
            failed_tiles=failed[f.sample],
            gallery=crops(_best_first(p.top), warnings),
            borderline=crops(weakest, warnings),
            near_misses=[replace(c, note=counted_as.get(id(d), ""))
                         for c, (_, d) in zip(near_crops, near_picked, strict=True)],  # fmt: skip
            macrophages=crops(_best_first(p.macrophages), warnings),
            plots=plots,
            marrow=marrow,
            qc=checks[f.sample],
            research_context=gars_research_context(f),
            warnings=warnings + review_warnings,
            review=review_verdicts(review) if review is not None and review.started else [],
            review_status=review,
            confirmed_rate=confirmed_rate,
        )
        if panel is not None:
            report.labs = LABS_MATCHED
            report.scores = score_views(panel, marrow, settings)
            report.lab_values = panel_rows(panel)
        elif labs:
            report.labs = LABS_MISSING
            report.warnings.append(
                f"no lab panel for sample {f.sample!r} in {labs}: scores not computed"
            )
        else:
            report.warnings.append("no lab file given (--labs): scores not computed")
        reports.append(report)
    missing, unmatched = ([], []) if not labs else _panel_mismatch(
        [f.sample for f in findings], panel_samples
    )
    for name, closest in unmatched:
        hint = f" (closest sample: {closest!r})" if closest else ""
        for r in reports:
            r.warnings.append(f"lab panel for sample {name!r} matches no scanned sample{hint}")
    return ReportSet(reports, missing, unmatched)


def _reviewed_marrow(f: SampleFindings, review: SampleReview, assessed: int,
                     pathologist: bool | None, rule: MarrowRule) -> MarrowItem:  # fmt: skip
    """The marrow item judged on the hemophagocytes reviewers confirmed (their final engulfed
    counts) rather than on the model's calls."""
    confirmed = replace(f, hemophagocytes_by_engulfed=review.confirmed_by_engulfed(),
                        nucleated_cells_assessed=assessed)  # fmt: skip
    item = marrow_item(confirmed, pathologist, rule)
    n = review.classes["hemophagocyte"].confirmed
    basis = f"{n} hemophagocyte(s) confirmed by review ({', '.join(review.reviewers)}): {item.basis}"
    label = f"{item.label} (confirmed by review)" if item.state == "suggested present" else item.label
    return replace(item, basis=basis, label=label)


def build_reports(
    scan_dir: str | Path,
    labs: str | Path | None = None,
    marrow_rule: MarrowRule | None = None,
    gallery_size: int = 12,
    borderline_size: int = 6,
) -> list[SampleReport]:
    """One report per sample of ``scan_dir`` (see :func:`build_report_set`)."""
    return build_report_set(scan_dir, labs, marrow_rule, gallery_size, borderline_size).reports


def panel_rows(panel: Any) -> list[tuple[str, str]]:
    """``(analyte, value as reported)`` rows of a lab panel; pending tests say so."""
    rows = [
        (name, ("yes" if v else "no") if isinstance(v, bool) else str(v))
        for name, v in panel.values.items()
    ]
    return rows + [(name, "pending") for name in sorted(panel.pending)]


def rate_text(report: SampleReport) -> str:
    """``38.46 per 1000 (95% CI 6.82-188.93)`` or ``not available``; once the hemophagocytes'
    review is complete, the confirmed rate, ``... (confirmed by review)``."""
    if report.rate_from_review and report.confirmed_rate:
        rate, (lo, hi) = report.confirmed_rate
        return f"{rate:.2f} per 1000 (95% CI {lo:.2f}–{hi:.2f}) (confirmed by review)"
    rate = report.findings.hemophagocytes_per_1000_nucleated
    if rate is None:
        return "not available"
    ci = report.rate_ci_per_1000
    interval = f" (95% CI {ci[0]:.2f}–{ci[1]:.2f})" if ci else ""
    return f"{Decimal(str(rate)):.2f} per 1000{interval}"
