"""MH score: primary HLH versus MAS in sJIA (Minoia et al. 2017; spec §5).

Points when the criterion is met (all boundaries inclusive): age at onset <= 1.6 years 37;
neutrophils <= 1.4 x10^9/L 37; fibrinogen <= 131 mg/dL 15; splenomegaly 12; platelets
<= 78 x10^9/L 11; haemoglobin <= 8.3 g/dL 11 (range 0-123). MH >= 60 favours primary HLH,
< 60 favours MAS. The point table is confirmed only in secondary sources [S]; the widely quoted
sensitivity ~91% / specificity ~93% at 60, the paper's probability mapping and the DOI are [R]
(unverified) and are not used. These verification notes live here and in the README, not on
the signed report. ``age`` in the panel is taken as the age at onset. Missing items give lower
(0) and upper (their points) bounds; the call is only made when both agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hemoscan.labs.panel import LabPanel
from hemoscan.scores.base import ScoreItem, criterion, cut, flag_item, jsonable, missing_names, side

CITATION = (
    "Minoia F, Bovis F, Davì S, Insalaco A, Lehmberg K, Shenoi S, et al. Development and initial "
    "validation of the macrophage activation syndrome/primary hemophagocytic "
    "lymphohistiocytosis score, a diagnostic tool that differentiates primary hemophagocytic "
    "lymphohistiocytosis from macrophage activation syndrome. J Pediatr. 2017;189:72-78.e3. "
    "doi:10.1016/j.jpeds.2017.06.005"
)
SOURCE = "Minoia 2017"
CUTOFF = 60
#: (name, analyte, cut-off or None for a yes/no item, points).
ITEMS = (
    ("Age at onset", "age", cut("<=", "1.6", "years"), 37),
    ("Neutrophils", "neutrophils", cut("<=", "1.4", "×10⁹/L"), 37),
    ("Fibrinogen", "fibrinogen", cut("<=", "131", "mg/dL"), 15),
    ("Splenomegaly", "splenomegaly", None, 12),
    ("Platelets", "platelets", cut("<=", "78", "×10⁹/L"), 11),
    ("Haemoglobin", "hemoglobin", cut("<=", "8.3", "g/dL"), 11),
)


@dataclass(frozen=True)
class MHScoreResult:
    """``total`` counts missing items as 0 (= ``lower``); ``favours`` needs both bounds to agree."""

    items: tuple[ScoreItem, ...]
    lower: int
    upper: int
    missing: tuple[str, ...]
    favours: str | None
    cutoff: int = CUTOFF
    citation: str = CITATION

    @property
    def total(self) -> int:
        return self.lower

    def to_dict(self) -> dict[str, Any]:
        return jsonable({
            "total": self.total, "lower": self.lower, "upper": self.upper, "cutoff": self.cutoff,
            "favours": self.favours, "missing": self.missing,
            "items": [i.to_dict() for i in self.items], "citation": self.citation,
        })  # fmt: skip


def mh_score(panel: LabPanel) -> MHScoreResult:
    """The MH score of ``panel``."""
    items = tuple(
        flag_item(panel, name, analyte, SOURCE, points=points) if rule is None
        else criterion(panel, name, analyte, rule, SOURCE, points=points)
        for name, analyte, rule, points in ITEMS
    )  # fmt: skip
    lower = sum(int(i.points_lower or 0) for i in items)
    upper = sum(int(i.points_upper or 0) for i in items)
    call = side(lower, upper, CUTOFF)
    favours = None if call is None else "primary HLH" if call else "MAS"
    return MHScoreResult(items, lower, upper, missing_names(items), favours)
