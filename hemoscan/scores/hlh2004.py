"""HLH-2004 diagnostic criteria (Henter et al. 2007, Table 1; spec §2).

HLH is diagnosed with a molecular diagnosis consistent with HLH, or with at least 5 of 8 criteria:
fever; splenomegaly; cytopenias in >= 2 of 3 lineages (Hb < 90 g/L, < 100 g/L under 4 weeks of age;
platelets < 100 x10^9/L; neutrophils < 1.0 x10^9/L); TG >= 3.0 mmol/L (>= 265 mg/dL) and/or
fibrinogen <= 1.5 g/L; hemophagocytosis (marrow, spleen or lymph nodes); low or absent NK-cell
activity; ferritin >= 500 µg/L; sCD25 >= 2400 U/mL. The primary operators are used (spec §2.5).

Choices (spec §2.5, §8.4): fever is the clinician's yes/no ``fever`` flag (the 2004 table gives
no temperature); ``fever_threshold_c`` (e.g. 38.5 °C, Jordan et al. Blood 2011;118:4041) derives it
from ``temperature`` when the flag is absent. Triglycerides are compared in the unit the lab
reported: 265 mg/dL meets the mg/dL wording although it is 2.99 mmol/L (g/L is converted to
mmol/L). ``scd25_cutoff`` (e.g. ``"1800 U/mL"`` or a pg/mL lab norm) replaces 2400 U/mL; sCD25
in pg/mL is not compared without one. Criteria not available count as unknown: the result is
``met`` at 5, ``undecided`` when met + unknown (pending send-out tests, missing values) could
still reach 5, else ``not met``. "No evidence of malignancy" is reported with criterion 5, not
counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hemoscan.labs.analytes import BY_NAME
from hemoscan.labs.panel import LabPanel, parse_value
from hemoscan.scores.base import (
    Cut,
    ScoreItem,
    criterion,
    cut,
    fever,
    flag_item,
    jsonable,
    resolve_marrow,
    scored_or_met,
    tally,
)

CITATION = (
    "Henter JI, Horne A, Aricó M, Egeler RM, Filipovich AH, Imashuku S, Ladisch S, McClain K, "
    "Webb D, Winiarski J, Janka G. HLH-2004: Diagnostic and therapeutic guidelines for "
    "hemophagocytic lymphohistiocytosis. Pediatr Blood Cancer. 2007;48(2):124-131. "
    "doi:10.1002/pbc.21039"
)
SOURCE = "Henter 2007, Table 1"
REQUIRED = 5
HEMOGLOBIN = cut("<", "90", "g/L")
HEMOGLOBIN_INFANT = cut("<", "100", "g/L")
INFANT_WEEKS = Decimal(4)
PLATELETS = cut("<", "100", "×10⁹/L")
NEUTROPHILS = cut("<", "1.0", "×10⁹/L")
#: Triglyceride cut-off in the unit the lab reported (the paper prints both).
TRIGLYCERIDES = {"mmol/L": cut(">=", "3.0", "mmol/L"), "mg/dL": cut(">=", "265", "mg/dL")}
FIBRINOGEN = cut("<=", "1.5", "g/L")
FERRITIN = cut(">=", "500", "µg/L")
SCD25 = cut(">=", "2400", "U/mL")
MARROW_ITEM = "5. Hemophagocytosis (bone marrow, spleen or lymph nodes)"


@dataclass(frozen=True)
class HLH2004Result:
    """``result`` is ``"met"``, ``"not met"`` or ``"undecided"``; ``met_by`` names the path."""

    items: tuple[ScoreItem, ...]
    criteria_met: int
    criteria_unknown: int
    molecular: bool | None
    result: str
    met_by: str
    reason: str
    unknown: tuple[str, ...]
    marrow_source: str
    citation: str = CITATION

    def to_dict(self) -> dict[str, Any]:
        return jsonable({
            "criteria_met": self.criteria_met, "criteria_unknown": self.criteria_unknown,
            "criteria_required": REQUIRED, "molecular_diagnosis": self.molecular,
            "result": self.result, "met_by": self.met_by, "reason": self.reason,
            "unknown": self.unknown, "marrow_source": self.marrow_source,
            "items": [i.to_dict() for i in self.items], "citation": self.citation,
        })  # fmt: skip


def _hemoglobin(panel: LabPanel) -> ScoreItem:
    name, threshold = "Haemoglobin", "< 90 g/L (< 100 g/L under 4 weeks of age)"
    hb = panel.quantity("hemoglobin", "g/L")
    weeks = panel.quantity("age", "weeks")
    if hb is None:
        return criterion(panel, name, "hemoglobin", HEMOGLOBIN, SOURCE)
    infant = None if weeks is None else weeks < INFANT_WEEKS
    if HEMOGLOBIN.test(hb) or not HEMOGLOBIN_INFANT.test(hb):
        met, note = HEMOGLOBIN.test(hb), ""
    elif infant is None:
        note = "90-99 g/L is low only under 4 weeks of age: age needed"
        return ScoreItem(name, hb, "g/L", threshold, SOURCE, "missing", note=note)
    else:
        met = infant
        note = "infant rule (< 4 weeks): < 100 g/L" if infant else "age >= 4 weeks: < 90 g/L"
    return scored_or_met(name, hb, "g/L", threshold, SOURCE, met, None, note)


def _any_of(name: str, threshold: str, parts: tuple[ScoreItem, ...], need: int) -> ScoreItem:
    met, unknown = tally(p.met for p in parts)
    if met >= need or met + unknown < need:
        return scored_or_met(name, met, "", threshold, SOURCE, met >= need, None, parts=parts)
    status = "pending" if any(p.status == "pending" for p in parts) else "missing"
    note = f"{met} met, {unknown} not available"
    return ScoreItem(name, met, "", threshold, SOURCE, status, note=note, parts=parts)


def _triglycerides(panel: LabPanel) -> ScoreItem:
    value = panel.value("triglycerides")
    rule = TRIGLYCERIDES.get(value.reported_unit if value else "", TRIGLYCERIDES["mmol/L"])
    note = "compared in the reported unit (>= 3.0 mmol/L, i.e. >= 265 mg/dL)"
    return criterion(panel, "Triglycerides (fasting)", "triglycerides", rule, SOURCE, note=note)


def _scd25(panel: LabPanel, cutoff: str | None) -> ScoreItem:
    name, rule, note = "8. Soluble CD25 (sIL-2R)", SCD25, ""
    if cutoff is not None:
        limit = parse_value(BY_NAME["scd25"], cutoff, "settings", "scd25_cutoff")
        rule = Cut(">=", limit.value, limit.unit)
        note = f"laboratory cut-off {limit} (HLH-2004: 2400 U/mL)"
    value = panel.value("scd25")
    if value is not None and value.unit != rule.unit:
        note = value.flag or f"sCD25 in {value.unit} cannot be compared with {rule}"
        return ScoreItem(name, value.value, value.unit, str(rule), SOURCE, "missing", note=note)
    return criterion(panel, name, "scd25", rule, SOURCE, note=note)


def _verdict(met: int, unknown: int, molecular: bool | None, pending: bool) -> tuple[str, str, str]:
    """``(result, met_by, reason)``."""
    if molecular:
        return "met", "molecular diagnosis", "molecular diagnosis consistent with HLH"
    counted = f"{met} of 8 criteria met"
    if met >= REQUIRED:
        return "met", f"{REQUIRED} of 8 criteria", counted
    if unknown:
        counted += f", {unknown} not available"
    if met + unknown >= REQUIRED or pending:
        return "undecided", "", counted + ("; molecular testing pending" if pending else "")
    return "not met", "", counted


def hlh2004(
    panel: LabPanel,
    marrow_hemophagocytosis: bool | None = None,
    *,
    fever_threshold_c: Decimal | None = None,
    scd25_cutoff: str | None = None,
) -> HLH2004Result:
    """HLH-2004 for ``panel``; ``marrow_hemophagocytosis`` is the image suggestion for criterion
    5, used only when the panel has no pathologist's value."""
    marrow, source = resolve_marrow(panel, marrow_hemophagocytosis)
    has_fever, fever_note = fever(panel, fever_threshold_c)
    molecular = panel.flag("molecular_diagnosis")
    lineages = (
        _hemoglobin(panel),
        criterion(panel, "Platelets", "platelets", PLATELETS, SOURCE),
        criterion(panel, "Neutrophils", "neutrophils", NEUTROPHILS, SOURCE),
    )
    lipids = (
        _triglycerides(panel),
        criterion(panel, "Fibrinogen", "fibrinogen", FIBRINOGEN, SOURCE),
    )
    malignancy = "requires no evidence of malignancy (not counted)"
    items = (
        flag_item(panel, "1. Fever", "fever", SOURCE, value=has_fever,
                  note=fever_note or "clinician-reported; the 2004 table gives no temperature"),
        flag_item(panel, "2. Splenomegaly", "splenomegaly", SOURCE),
        _any_of("3. Cytopenias (>= 2 of 3 lineages)", ">= 2 of: Hb, platelets, neutrophils low",
                lineages, 2),
        _any_of("4. Hypertriglyceridaemia and/or hypofibrinogenaemia", "either", lipids, 1),
        flag_item(panel, MARROW_ITEM,
                  "marrow_hemophagocytosis", SOURCE, value=marrow,
                  note="; ".join(n for n in (source, malignancy) if n)),
        flag_item(panel, "6. Low or absent NK-cell activity", "nk_activity_low", SOURCE,
                  note="according to the local laboratory reference"),
        criterion(panel, "7. Ferritin", "ferritin", FERRITIN, SOURCE),
        _scd25(panel, scd25_cutoff),
    )  # fmt: skip
    met, unknown = tally(i.met for i in items)
    pending = molecular is None and panel.is_pending("molecular_diagnosis")
    result, met_by, reason = _verdict(met, unknown, molecular, pending)
    molecular_item = flag_item(
        panel,
        "Molecular diagnosis consistent with HLH",
        "molecular_diagnosis",
        SOURCE,
        note="path 1: suffices alone",
    )
    unknown_names = tuple(f"{i.name} ({i.status})" for i in items if not i.known)
    return HLH2004Result((molecular_item, *items), met, unknown, molecular, result, met_by,
                         reason, unknown_names, source)  # fmt: skip
