"""HScore for reactive hemophagocytic syndrome (Fardet et al. 2014).

Nine items, points from the paper's Table 3 (spec §1.2, [P]); middle bands are closed intervals
(38.4 and 39.4 °C score 33; ferritin 2000 and 6000 score 35; TG 1.5 and 4.0 mmol/L score 44),
fibrinogen exactly 2.5 g/L and AST exactly 30 U/L score. Items are compared in the paper's units
(°C, mmol/L, g/L) after conversion, so 101.1 °F (38.39 °C) scores 0 and TG 133 mg/dL
(1.502 mmol/L) scores 44. Positive at >= 169 (sensitivity 93%, specificity 86%).

Probability: linear interpolation in the paper's table (spec §1.3), ``<1%`` below 100 (the table
gives <1% at 90 and 1% at 100), ``99%`` for 240-249 and ``>99%`` from 250; no logistic formula is
used (none is published, spec §1.4). Missing items score 0 in ``lower`` and their maximum in
``upper`` (spec §1.5); ``positive`` is only stated when both bounds agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from itertools import pairwise
from typing import Any

from hemoscan.labs.panel import LabPanel, fmt
from hemoscan.scores.base import (
    Op,
    ScoreItem,
    criterion,
    cut,
    flag_item,
    jsonable,
    missing_names,
    reported_note,
    resolve_marrow,
    scored_or_met,
    side,
    tally,
    unknown_status,
)

CITATION = (
    "Fardet L, Galicier L, Lambotte O, Marzac C, Aumont C, Chahwan D, Coppo P, Hejblum G. "
    "Development and validation of the HScore, a score for the diagnosis of reactive "
    "hemophagocytic syndrome. Arthritis Rheumatol. 2014;66(9):2613-2620. doi:10.1002/art.38690"
)
SOURCE = "Fardet 2014, Table 3"
CUTOFF = 169
MAX_TOTAL = 337


@dataclass(frozen=True)
class Banded:
    """An item scored by bands tried highest first: ``bands`` are ``(op, limit, points)``."""

    name: str
    analyte: str
    unit: str
    bands: tuple[tuple[Op, str, int], ...]
    text: str


TEMPERATURE = Banded(
    "Temperature",
    "temperature",
    "°C",
    ((">", "39.4", 49), (">=", "38.4", 33)),
    "< 38.4: 0; 38.4-39.4: 33; > 39.4: 49",
)
FERRITIN = Banded(
    "Ferritin",
    "ferritin",
    "ng/mL",
    ((">", "6000", 50), (">=", "2000", 35)),
    "< 2000: 0; 2000-6000: 35; > 6000: 50",
)
TRIGLYCERIDES = Banded(
    "Triglycerides",
    "triglycerides",
    "mmol/L",
    ((">", "4.0", 64), (">=", "1.5", 44)),
    "< 1.5: 0; 1.5-4.0: 44; > 4.0: 64",
)
FIBRINOGEN = cut("<=", "2.5", "g/L")
FIBRINOGEN_POINTS = 30
AST = cut(">=", "30", "U/L")
AST_POINTS = 19
IMMUNOSUPPRESSION_POINTS = 18
MARROW_POINTS = 35
MARROW_ITEM = "Hemophagocytosis on bone-marrow aspirate"
#: Organomegaly points by number of enlarged organs (liver, spleen).
ORGANOMEGALY_POINTS = (0, 23, 38)
#: Cytopenia points by number of cytopenic lineages; one lineage scores 0.
CYTOPENIA_POINTS = (0, 0, 24, 34)
CYTOPENIAS = (
    ("Haemoglobin", "hemoglobin", cut("<=", "9.2", "g/dL")),
    ("Leukocytes", "leukocytes", cut("<=", "5.0", "×10⁹/L")),
    ("Platelets", "platelets", cut("<=", "110", "×10⁹/L")),
)
NO_MARROW_NOTE = "the marrow item's 35 points are in the upper bound only"
#: Fardet 2014 Table 3: (HScore, probability of hemophagocytic syndrome in %).
PROBABILITY_TABLE: tuple[tuple[int, int], ...] = (
    (100, 1), (110, 3), (120, 5), (130, 9), (140, 16), (150, 25), (160, 40), (170, 54), (180, 70),
    (190, 80), (200, 88), (210, 93), (220, 96), (230, 98), (240, 99),
)  # fmt: skip


def probability(total: int) -> tuple[str, Decimal | None]:
    """``(label, percent)``: table interpolation to 0.1 %, ``"<1%"`` / ``">99%"`` at the ends."""
    if total < 100:
        return "<1%", None
    if total >= 250:
        return ">99%", None
    if total >= 240:
        return "99%", Decimal(99)
    for (s0, p0), (s1, p1) in pairwise(PROBABILITY_TABLE):
        if s0 <= total < s1:
            percent = (p0 + Decimal(p1 - p0) * (total - s0) / (s1 - s0)).quantize(Decimal("0.1"))
            return f"{fmt(percent)}%", percent
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class HScoreResult:
    """``total`` counts missing items as 0 (= ``lower``); ``upper`` gives them their maximum."""

    items: tuple[ScoreItem, ...]
    lower: int
    upper: int
    missing: tuple[str, ...]
    probability: str
    probability_percent: Decimal | None
    positive: bool | None
    marrow_source: str
    note: str
    cutoff: int = CUTOFF
    citation: str = CITATION

    @property
    def total(self) -> int:
        return self.lower

    def to_dict(self) -> dict[str, Any]:
        return jsonable({
            "total": self.total, "lower": self.lower, "upper": self.upper,
            "probability": self.probability, "probability_percent": self.probability_percent,
            "positive": self.positive, "cutoff": self.cutoff, "missing": self.missing,
            "marrow_source": self.marrow_source, "note": self.note,
            "items": [i.to_dict() for i in self.items], "citation": self.citation,
        })  # fmt: skip


def _banded(panel: LabPanel, item: Banded) -> ScoreItem:
    value = panel.quantity(item.analyte, item.unit)
    head = (item.name, value, item.unit, item.text, SOURCE)
    note = reported_note(panel, item.analyte, item.unit)
    if value is None:
        status = unknown_status(panel, item.analyte)
        return ScoreItem(*head, status, points_lower=0, points_upper=item.bands[0][2], note=note)
    rules = ((cut(op, limit, item.unit), p) for op, limit, p in item.bands)
    points = next((p for rule, p in rules if rule.test(value)), 0)
    return ScoreItem(*head, "scored", points, points, points, points > 0, note)


def _counted(
    name: str, parts: tuple[ScoreItem, ...], table: tuple[int, ...], text: str
) -> ScoreItem:
    met, unknown = tally(p.met for p in parts)
    lower, upper = table[met], table[met + unknown]
    if lower == upper:
        return scored_or_met(name, met, "", text, SOURCE, lower > 0, lower, parts=parts)
    status = "pending" if any(p.status == "pending" for p in parts) else "missing"
    note = f"{met} known, {unknown} not available"
    return ScoreItem(name, met, "", text, SOURCE, status, None, lower, upper, None, note, parts)


def hscore(panel: LabPanel, marrow_hemophagocytosis: bool | None = None) -> HScoreResult:
    """The HScore of ``panel``.

    ``marrow_hemophagocytosis`` is the image suggestion for item 9, used only when the panel has
    no pathologist's ``marrow_hemophagocytosis``.
    """
    marrow, source = resolve_marrow(panel, marrow_hemophagocytosis)
    organs = (flag_item(panel, "Hepatomegaly", "hepatomegaly", SOURCE),
              flag_item(panel, "Splenomegaly", "splenomegaly", SOURCE))  # fmt: skip
    cytopenias = tuple(criterion(panel, n, a, rule, SOURCE) for n, a, rule in CYTOPENIAS)
    items = (
        flag_item(panel, "Known underlying immunosuppression", "immunosuppression", SOURCE,
                  points=IMMUNOSUPPRESSION_POINTS, note="HIV or long-term immunosuppressants"),
        _banded(panel, TEMPERATURE),
        _counted("Organomegaly", organs, ORGANOMEGALY_POINTS, "one organ: 23; both: 38"),
        _counted("Cytopenias", cytopenias, CYTOPENIA_POINTS, "lineages low: 0-1: 0; 2: 24; 3: 34"),
        _banded(panel, FERRITIN),
        _banded(panel, TRIGLYCERIDES),
        criterion(panel, "Fibrinogen", "fibrinogen", FIBRINOGEN, SOURCE, points=FIBRINOGEN_POINTS),
        criterion(panel, "AST (SGOT)", "ast", AST, SOURCE, points=AST_POINTS),
        flag_item(panel, MARROW_ITEM, "marrow_hemophagocytosis",
                  SOURCE, points=MARROW_POINTS, value=marrow, note=source),
    )  # fmt: skip
    lower = sum(int(i.points_lower or 0) for i in items)
    upper = sum(int(i.points_upper or 0) for i in items)
    low_label, high_label = probability(lower)[0], probability(upper)[0]
    if lower == upper:
        label, percent = probability(lower)
    else:
        same = low_label == high_label
        label, percent = low_label if same else f"{low_label} to {high_label}", None
    note = "" if marrow is not None else NO_MARROW_NOTE
    positive = side(lower, upper, CUTOFF)
    missing = missing_names(items)
    return HScoreResult(items, lower, upper, missing, label, percent, positive, source, note)
