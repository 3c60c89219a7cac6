"""Assemble a :class:`SampleReport` per sample from a scan folder and an optional lab file.

All numbers are computed here; templates only lay them out.
"""

from __future__ import annotations

import heapq
import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hemoscan.datamodel import Detection, SampleFindings
from hemoscan.errors import HemoscanError
from hemoscan.io.scan_store import SUMMARY, iter_detections, read_run, read_tiles, utc_now
from hemoscan.report.evidence import EvidenceCrop, collect_crops
from hemoscan.report.plots import bar_chart_svg, histogram_svg
from hemoscan.stats import wilson_interval

RESEARCH_USE = (
    "hemoscan's image findings are automated suggestions for a pathologist to "
    "confirm against the cells shown; they are not a diagnosis. Scores are computed from the lab values "
    "given, as published; they support, and do not replace, clinical judgement."
)


@dataclass(frozen=True)
class ScoreView:
    """One score as the report shows it: a headline and the items, both from ``to_dict()``."""

    key: str
    title: str
    headline: str
    data: dict[str, Any]


@dataclass
class SampleReport:
    sample: str
    findings: SampleFindings
    rate_ci_per_1000: tuple[float, float] | None
    failed_tiles: list[tuple[str, str]]
    gallery: list[EvidenceCrop]
    borderline: list[EvidenceCrop]
    plots: dict[str, str]
    marrow_suggestion: str = ""
    marrow_suggested: bool | None = None
    scores_with_image: list[ScoreView] = field(default_factory=list)
    scores_without_image: list[ScoreView] = field(default_factory=list)
    research_context: list[str] = field(default_factory=list)
    lab_values: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    generated_at: str = field(default_factory=utc_now)
    research_use: str = RESEARCH_USE

    def summary_row(self) -> dict[str, Any]:
        """The sample-level numbers of the index CSV."""
        f = self.findings
        with_image = {v.key: v.data for v in self.scores_with_image}
        ci = self.rate_ci_per_1000
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
            "hscore_total": with_image.get("hscore", {}).get("total"),
            "hscore_upper": with_image.get("hscore", {}).get("upper"),
            "hlh2004_result": with_image.get("hlh2004", {}).get("result"),
            "mas2016_classified": with_image.get("mas2016", {}).get("classified"),
            "ms_score": with_image.get("ms_score", {}).get("value"),
        }


_TITLES = {
    "hscore": "HScore (Fardet 2014)",
    "hlh2004": "HLH-2004 diagnostic criteria (Henter 2007)",
    "mas2016": "2016 EULAR/ACR/PRINTO MAS classification (Ravelli 2016)",
    "ms_score": "MS score (Minoia 2019)",
    "mh_score": "MH score (Minoia 2017)",
    "ferritin_esr": "Ferritin:ESR ratio (Eloseily 2019)",
}


def _call(value: bool | None, yes: str, no: str) -> str:
    return "undetermined (missing data)" if value is None else (yes if value else no)


def headline(key: str, d: dict[str, Any]) -> str:
    """A one-line statement of a score's result, from its ``to_dict()``."""
    if key == "hscore":
        return (f"{d['total']} points (possible range {d['lower']}–{d['upper']}), probability {d['probability']}; "
                f"{_call(d['positive'], 'positive', 'negative')} at ≥ {d['cutoff']}")  # fmt: skip
    if key == "hlh2004":
        return f"{d['criteria_met']} of 8 criteria met ({d['criteria_required']} needed): {d['result']}"
    if key == "mas2016":
        if not d.get("applicable"):
            return f"not applicable: {d.get('reason', '')}"
        return f"classified as MAS: {_call(d.get('classified'), 'yes', 'no')}"
    if key == "ms_score":
        if d.get("value") is None:
            return f"not computable: {d.get('reason', '') or ', '.join(d.get('missing', []))}"
        return f"{d['value']}; {_call(d.get('positive'), 'MAS likely', 'MAS unlikely')} at ≥ {d.get('cutoff')}"
    if key == "mh_score":
        return f"{d.get('total')} points (range {d.get('lower')}–{d.get('upper')})"
    if key == "ferritin_esr":
        if d.get("ratio") is None:
            return f"not computable: {d.get('reason', '')}"
        return f"ratio {d['ratio']}; {_call(d.get('positive'), 'above', 'below')} the cut-off {d.get('cutoff')}"
    return ""


def _score_views(report_dict: dict[str, Any]) -> list[ScoreView]:
    return [
        ScoreView(k, t, headline(k, report_dict[k]), report_dict[k])
        for k, t in _TITLES.items()
        if k in report_dict
    ]


@dataclass
class _Picks:
    top: list[tuple[float, int, str, Detection]] = field(default_factory=list)  # min-heap of best
    low: list[tuple[float, int, str, Detection]] = field(
        default_factory=list
    )  # max-heap of weakest
    scores: list[float] = field(default_factory=list)
    per_tile: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def _pick_evidence(scan_dir: Path, n_top: int, n_low: int) -> dict[str, _Picks]:
    """Stream detections once; keep per sample the best and the weakest hemophagocyte calls,
    every hemophagocyte score and the number of hemophagocytes per tile."""
    picks: dict[str, _Picks] = defaultdict(_Picks)
    for i, (sample, tile, det) in enumerate(iter_detections(scan_dir)):
        if det.label != "hemophagocyte":
            continue
        p = picks[sample]
        p.scores.append(det.score)
        p.per_tile[tile] += 1
        entry = (det.score, i, tile, det)
        if len(p.top) < n_top:
            heapq.heappush(p.top, entry)
        else:
            entry = heapq.heappushpop(p.top, entry)  # the displaced one may be borderline
        if entry in p.top:
            continue
        neg = (-entry[0], entry[1], entry[2], entry[3])
        if len(p.low) < n_low:
            heapq.heappush(p.low, neg)
        else:
            heapq.heappushpop(p.low, neg)
    return picks


def build_reports(
    scan_dir: str | Path,
    labs: str | Path | None = None,
    marrow_rule: Any = None,
    gallery_size: int = 12,
    borderline_size: int = 6,
) -> list[SampleReport]:
    """One report per sample of ``scan_dir`` (a finished ``hemoscan scan`` folder)."""
    from hemoscan.labs.readers import read_lab_panels
    from hemoscan.scores import (
        MarrowRule,
        compute_all,
        gars_research_context,
        suggest_marrow_hemophagocytosis,
    )

    scan_dir = Path(scan_dir)
    try:
        summary = json.loads((scan_dir / SUMMARY).read_text())
        run = read_run(scan_dir)
    except (OSError, json.JSONDecodeError, KeyError) as e:
        raise HemoscanError(f"{scan_dir}: not a finished hemoscan scan folder ({e})") from None
    findings = [SampleFindings.from_dict(s) for s in summary["samples"]]
    rule = marrow_rule or MarrowRule()
    panels = {p.sample: p for p in read_lab_panels(labs)} if labs else {}
    tiles = read_tiles(scan_dir)
    ok_tiles: dict[str, list[str]] = defaultdict(list)
    failed: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for t in tiles:
        if t.ok:
            ok_tiles[t.sample].append(t.tile)
        else:
            failed[t.sample].append((t.tile, t.error))
    picks = _pick_evidence(scan_dir, gallery_size, borderline_size)
    base_dirs = [Path(run.get("working_dir", ".")), Path.cwd()]

    reports = []
    for f in findings:
        p = picks.get(f.sample, _Picks())
        top = sorted(p.top, key=lambda e: (-e[0], e[1]))
        low = sorted(((-s, i, t, d) for s, i, t, d in p.low), key=lambda e: (e[0], e[1]))
        gallery, w1 = collect_crops([(t, d) for _, _, t, d in top], base_dirs)
        borderline, w2 = collect_crops([(t, d) for _, _, t, d in low], base_dirs)
        n_hemo = f.counts.get("hemophagocyte", 0)
        ci = None
        if f.nucleated_cells_assessed:
            lo, hi = wilson_interval(n_hemo, f.nucleated_cells_assessed)
            ci = (1000 * lo, 1000 * hi)
        counts = [p.per_tile.get(t, 0) for t in ok_tiles[f.sample]]
        plots = {
            "per_tile": bar_chart_svg(
                [sum(1 for c in counts if c == k) for k in range(max(counts, default=0) + 1)],
                [str(k) for k in range(max(counts, default=0) + 1)],
                "Tiles by number of hemophagocytes", "hemophagocytes in the tile",
            ),
            "scores": histogram_svg(p.scores, title="Hemophagocyte confidence", xlabel="model score"),
        }  # fmt: skip
        report = SampleReport(
            sample=f.sample,
            findings=f,
            rate_ci_per_1000=ci,
            failed_tiles=failed[f.sample],
            gallery=gallery,
            borderline=borderline,
            plots=plots,
            warnings=[*w1, *w2],
        )
        if f.tiles_failed:
            report.warnings.append(f"{f.tiles_failed} tile(s) could not be scanned (listed below)")
        if f.nucleated_cells_assessed < 500:
            report.warnings.append(f"only {f.nucleated_cells_assessed} nucleated cells assessed: the rate per "
                                   "1000 is imprecise (see its confidence interval)")  # fmt: skip
        suggestion = suggest_marrow_hemophagocytosis(f, rule)
        report.marrow_suggested, report.marrow_suggestion = suggestion.value, suggestion.reason
        report.research_context = gars_research_context(f)
        panel = panels.get(f.sample)
        if panel is not None:
            report.scores_with_image = _score_views(compute_all(panel, suggestion.value).to_dict())
            report.scores_without_image = _score_views(compute_all(panel, None).to_dict())
            report.lab_values = panel_rows(panel)
        elif labs:
            report.warnings.append(
                f"no lab panel for sample {f.sample!r} in {labs}: scores not computed"
            )
        else:
            report.warnings.append("no lab file given (--labs): scores not computed")
        reports.append(report)
    for name in sorted(set(panels) - {f.sample for f in findings}):
        for r in reports:
            r.warnings.append(f"lab panel for sample {name!r} has no scan results in {scan_dir}")
    return reports


def panel_rows(panel: Any) -> list[tuple[str, str]]:
    """``(analyte, value as reported)`` rows of a lab panel; pending tests say so."""
    rows = [
        (name, ("yes" if v else "no") if isinstance(v, bool) else str(v))
        for name, v in panel.values.items()
    ]
    return rows + [(name, "pending") for name in sorted(panel.pending)]
