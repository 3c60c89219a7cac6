"""2016 EULAR/ACR/PRINTO classification criteria for MAS in sJIA (Ravelli et al. 2016; spec §3).

A febrile patient with known or suspected sJIA is classified as having MAS if ferritin > 684 ng/mL
and at least 2 of: platelets <= 181 x10^9/L, AST > 48 U/L, triglycerides > 156 mg/dL, fibrinogen
<= 360 mg/dL [P]. Values are converted to the paper's units first (TG 1.80 mmol/L = 159.4 mg/dL).
Applicability needs the ``fever`` and ``sjia`` flags (or ``fever_threshold_c`` with a temperature).
The paper's footnote that the abnormal values must not be better explained by another condition
(immune thrombocytopenia, infectious hepatitis, visceral leishmaniasis, familial hyperlipidaemia)
is from recollection [R]; it is the user-asserted ``alternative_explanation`` flag. These are
classification criteria for studies, derived in sJIA, not diagnostic criteria.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hemoscan.labs.panel import LabPanel
from hemoscan.scores.base import ScoreItem, criterion, cut, fever, flag_item, jsonable, tally

CITATION = (
    "Ravelli A, Minoia F, Davì S, Horne A, Bovis F, Pistorio A, et al. 2016 Classification "
    "Criteria for Macrophage Activation Syndrome Complicating Systemic Juvenile Idiopathic "
    "Arthritis. Ann Rheum Dis. 2016;75(3):481-489. doi:10.1136/annrheumdis-2015-208982; "
    "Arthritis Rheumatol. 2016;68(3):566-576. doi:10.1002/art.39332"
)
SOURCE = "Ravelli 2016"
FERRITIN = cut(">", "684", "ng/mL")
LABS = (
    ("Platelets", "platelets", cut("<=", "181", "×10⁹/L")),
    ("AST", "ast", cut(">", "48", "U/L")),
    ("Triglycerides", "triglycerides", cut(">", "156", "mg/dL")),
    ("Fibrinogen", "fibrinogen", cut("<=", "360", "mg/dL")),
)
REQUIRED = 2
EXCLUSION_NOTE = "excludes the classification when present (clinician-asserted)"


@dataclass(frozen=True)
class MAS2016Result:
    """``criteria_satisfied``: the laboratory rule alone; ``classified``: for applicable patients.

    ``result`` is ``classified``, ``not classified``, ``undecided``, ``not applicable`` or
    ``applicability unknown``.
    """

    items: tuple[ScoreItem, ...]
    applicable: bool | None
    ferritin_met: bool | None
    labs_met: int
    labs_unknown: int
    criteria_satisfied: bool | None
    classified: bool | None
    result: str
    reason: str
    citation: str = CITATION

    def to_dict(self) -> dict[str, Any]:
        return jsonable({
            "applicable": self.applicable, "classified": self.classified, "result": self.result,
            "reason": self.reason, "criteria_satisfied": self.criteria_satisfied,
            "ferritin_met": self.ferritin_met, "labs_met": self.labs_met,
            "labs_unknown": self.labs_unknown, "items": [i.to_dict() for i in self.items],
            "citation": self.citation,
        })  # fmt: skip


def _both(a: bool | None, b: bool | None) -> bool | None:
    if a is False or b is False:
        return False
    return True if a and b else None


def mas2016(panel: LabPanel, *, fever_threshold_c: Decimal | None = None) -> MAS2016Result:
    """The 2016 MAS classification of ``panel``."""
    febrile, fever_note = fever(panel, fever_threshold_c)
    gate = criterion(panel, "Ferritin", "ferritin", FERRITIN, SOURCE, note="required")
    labs = tuple(criterion(panel, n, a, rule, SOURCE) for n, a, rule in LABS)
    items = (
        flag_item(panel, "Fever", "fever", SOURCE, value=febrile,
                  note=fever_note or "prerequisite"),
        flag_item(panel, "Known or suspected sJIA", "sjia", SOURCE, note="prerequisite"),
        gate,
        *labs,
        flag_item(panel, "Abnormal labs explained by another condition", "alternative_explanation",
                  SOURCE, note=EXCLUSION_NOTE),
    )  # fmt: skip
    applicable = _both(febrile, panel.flag("sjia"))
    met, unknown = tally(i.met for i in labs)
    labs_rule = True if met >= REQUIRED else False if met + unknown < REQUIRED else None
    satisfied = _both(gate.met, labs_rule)
    summary = f"ferritin {gate.status}; {met} of 4 other criteria met"
    if unknown:
        summary += f", {unknown} not available"
    if panel.flag("alternative_explanation"):
        satisfied = False
        summary += "; abnormal values explained by another condition (user-asserted)"
    if applicable is False:
        classified, result = None, "not applicable"
        reason = "criteria apply to a febrile patient with known or suspected sJIA; " + summary
    elif applicable is None:
        classified, result = None, "applicability unknown"
        reason = "fever and/or known or suspected sJIA not recorded; " + summary
    else:
        classified = satisfied
        result = {True: "classified", False: "not classified", None: "undecided"}[satisfied]
        reason = summary
    return MAS2016Result(items, applicable, gate.met, met, unknown, satisfied, classified, result,
                         reason)  # fmt: skip
