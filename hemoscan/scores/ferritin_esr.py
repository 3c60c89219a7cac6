"""Ferritin:ESR ratio for MAS in sJIA (Eloseily et al. 2019; spec §6.1).

Ratio = ferritin (ng/mL) / ESR (mm/h); Youden-optimal cut-point 21.5 (sensitivity 82%,
specificity 78%, sJIA-MAS versus active sJIA). The abstract does not state the operator;
hemoscan flags ``>= 21.5`` (so exactly 21.5 is above; documented in the README, not printed on
the report). An ESR of 0 makes the ratio undefined.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hemoscan.labs.panel import LabPanel
from hemoscan.scores.base import ScoreItem, jsonable, unknown_status

CITATION = (
    "Eloseily EMA, Minoia F, Crayne CB, Beukelman T, Ravelli A, Cron RQ. Ferritin to erythrocyte "
    "sedimentation rate ratio: simple measure to identify macrophage activation syndrome in "
    "systemic juvenile idiopathic arthritis. ACR Open Rheumatol. 2019;1(6):345-349. "
    "doi:10.1002/acr2.11048"
)
SOURCE = "Eloseily 2019"
CUTOFF = Decimal("21.5")
INPUTS = (("Ferritin", "ferritin", "ng/mL"), ("ESR", "esr", "mm/h"))


@dataclass(frozen=True)
class FerritinESRResult:
    """``ratio`` is exact; ``above_cutoff`` is ``ratio >= cutoff`` (operator not in the paper)."""

    items: tuple[ScoreItem, ...]
    ratio: Decimal | None
    above_cutoff: bool | None
    reason: str
    cutoff: Decimal = CUTOFF
    citation: str = CITATION

    def to_dict(self) -> dict[str, Any]:
        ratio = None if self.ratio is None else self.ratio.quantize(Decimal("0.01"))
        return jsonable({
            "ratio": ratio, "above_cutoff": self.above_cutoff, "positive": self.above_cutoff,
            "cutoff": self.cutoff,
            "reason": self.reason, "items": [i.to_dict() for i in self.items],
            "citation": self.citation,
        })  # fmt: skip


def ferritin_esr(panel: LabPanel, *, cutoff: Decimal = CUTOFF) -> FerritinESRResult:
    """The ferritin:ESR ratio of ``panel``, or why it cannot be computed."""
    values = {analyte: panel.quantity(analyte, unit) for _, analyte, unit in INPUTS}
    items = [
        ScoreItem(name, values[a], unit, "", SOURCE,
                  "used" if values[a] is not None else unknown_status(panel, a))
        for name, a, unit in INPUTS
    ]  # fmt: skip
    ferritin, esr = values["ferritin"], values["esr"]
    if ferritin is None or esr is None:
        absent = ", ".join(i.name for i in items if i.value is None)
        reason = f"not computable: missing {absent}"
        return FerritinESRResult(tuple(items), None, None, reason, cutoff)
    if esr == 0:
        return FerritinESRResult(tuple(items), None, None, "not computable: ESR is 0", cutoff)
    ratio = ferritin / esr
    above = ratio >= cutoff
    items.append(ScoreItem("Ferritin:ESR ratio", ratio, "ng/mL per mm/h", f"≥ {cutoff}", SOURCE,
                           "met" if above else "not met", met=above))  # fmt: skip
    return FerritinESRResult(tuple(items), ratio, above, "", cutoff)
