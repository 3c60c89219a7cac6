"""MS score for MAS in systemic JIA (Minoia et al. 2019, Table 4; spec §4).

MS = 2.44·CNS + 1.54·haemorrhage − 1.30·active arthritis − 0.003·platelets (x10^9/L)
     + 0.001·LDH (U/L) − 0.004·fibrinogen (mg/dL) + 0.0001·ferritin (ng/mL)

MAS is suggested at MS >= -2.1 (configurable: AOSD and a Danish cohort proposed other cut-offs).
Arithmetic is exact (``Decimal``): -2.10 lands exactly on the cut-off, where float sums give
-2.1000000000000005 (spec §4.4, MS-3). Fibrinogen is used in mg/dL (g/L x 100) and platelets in
x10^9/L after conversion; fibrinogen typed in g/L as "mg/dL" is rejected by the lab panel.
Applicability: febrile patients with known or suspected sJIA (reported, not enforced).

Missing data: a missing yes/no item gives a lower and an upper bound (``value`` counts it absent);
a missing laboratory value makes the score not computable. The definitions of the clinical items
(CNS dysfunction: irritability, disorientation, lethargy, headache, seizures or coma; haemorrhagic
manifestations: purpura, easy bruising or mucosal bleeding) come from the group's earlier MAS
definitions, not from the MS paper itself [S].
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hemoscan.labs.panel import LabPanel, fmt
from hemoscan.scores.base import ScoreItem, fever, jsonable, reported_note, unknown_status

CITATION = (
    "Minoia F, Bovis F, Davì S, Horne A, Fischbach M, Frosch M, et al. Development and initial "
    "validation of the MS score for diagnosis of macrophage activation syndrome in systemic "
    "juvenile idiopathic arthritis. Ann Rheum Dis. 2019;78(10):1357-1362. "
    "doi:10.1136/annrheumdis-2019-215211"
)
SOURCE = "Minoia 2019, Table 4"
CUTOFF = Decimal("-2.1")
#: (name, analyte, unit or "" for a yes/no item, coefficient).
TERMS: tuple[tuple[str, str, str, Decimal], ...] = (
    ("CNS involvement", "cns_involvement", "", Decimal("2.44")),
    ("Haemorrhagic manifestations", "hemorrhage", "", Decimal("1.54")),
    ("Active arthritis", "active_arthritis", "", Decimal("-1.30")),
    ("Platelet count", "platelets", "×10⁹/L", Decimal("-0.003")),
    ("LDH", "ldh", "U/L", Decimal("0.001")),
    ("Fibrinogen", "fibrinogen", "mg/dL", Decimal("-0.004")),
    ("Ferritin", "ferritin", "ng/mL", Decimal("0.0001")),
)


@dataclass(frozen=True)
class MSScoreResult:
    """``value`` counts missing yes/no items as absent; ``lower``/``upper`` range over them."""

    items: tuple[ScoreItem, ...]
    value: Decimal | None
    lower: Decimal | None
    upper: Decimal | None
    positive: bool | None
    applicable: bool | None
    missing: tuple[str, ...]
    reason: str
    cutoff: Decimal = CUTOFF
    citation: str = CITATION

    def to_dict(self) -> dict[str, Any]:
        return jsonable({
            "value": self.value, "lower": self.lower, "upper": self.upper,
            "positive": self.positive, "cutoff": self.cutoff, "applicable": self.applicable,
            "missing": self.missing, "reason": self.reason,
            "items": [i.to_dict() for i in self.items], "citation": self.citation,
        })  # fmt: skip


def _term(panel: LabPanel, name: str, analyte: str, unit: str, beta: Decimal) -> ScoreItem:
    threshold = f"β = {fmt(beta)}" + (f" per {unit}" if unit else " if present")
    if unit:
        value: Decimal | bool | None = panel.quantity(analyte, unit)
        note = reported_note(panel, analyte, unit)
    else:
        value, note = panel.flag(analyte), ""
    head = (name, value, unit, threshold, SOURCE)
    if value is None:
        low, high = (None, None) if unit else (min(beta, Decimal(0)), max(beta, Decimal(0)))
        status = unknown_status(panel, analyte)
        return ScoreItem(*head, status, points_lower=low, points_upper=high, note=note)
    points = beta * (int(value) if isinstance(value, bool) else value)
    return ScoreItem(*head, "scored", points, points, points, note=note)


def ms_score(
    panel: LabPanel, *, cutoff: Decimal = CUTOFF, fever_threshold_c: Decimal | None = None
) -> MSScoreResult:
    """The MS score of ``panel`` in exact decimals; positive (MAS suggested) at ``>= cutoff``."""
    items = tuple(_term(panel, *term) for term in TERMS)
    febrile, _ = fever(panel, fever_threshold_c)
    sjia = panel.flag("sjia")
    applicable = False if febrile is False or sjia is False else True if febrile and sjia else None
    missing = tuple(i.name for i in items if not i.known)
    labs_missing = [i.name for i in items if not i.known and i.unit]
    if labs_missing:
        reason = f"not computable: missing {', '.join(labs_missing)}"
        return MSScoreResult(items, None, None, None, None, applicable, missing, reason, cutoff)
    value = sum((i.points or Decimal(0) for i in items), Decimal(0))
    lower = sum((i.points_lower for i in items if i.points_lower is not None), Decimal(0))
    upper = sum((i.points_upper for i in items if i.points_upper is not None), Decimal(0))
    positive = True if lower >= cutoff else False if upper < cutoff else None
    reason = "" if applicable else (
        "validated in febrile patients with known or suspected sJIA" if applicable is False
        else "applicability (fever, known or suspected sJIA) not recorded")  # fmt: skip
    return MSScoreResult(items, value, lower, upper, positive, applicable, missing, reason, cutoff)
