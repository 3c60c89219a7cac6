"""Pieces shared by the score modules: cut-offs, result items, missing-data logic, JSON numbers.

Missing is not normal: an item that was not measured is reported as ``missing`` (or ``pending``
for a test sent out), each score gives a lower and an upper bound over the missing items, and a
call is only made when both bounds fall on the same side of the cut-off
(spec ``/work/shared/specs/lab-scores.md`` §0, rule 3).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

from hemoscan.labs.panel import LabPanel, fmt

Op = Literal["<", "<=", ">", ">="]
_OPS = {"<": operator.lt, "<=": operator.le, ">": operator.gt, ">=": operator.ge}
_SYMBOLS = {"<": "<", "<=": "≤", ">": ">", ">=": "≥"}

MARROW_FROM_PANEL = "pathologist (lab panel)"
MARROW_FROM_IMAGE = "image suggestion (hemoscan scan; to be confirmed by a pathologist)"


@dataclass(frozen=True)
class Cut:
    """A cut-off ``value op limit`` in ``unit``, e.g. ``Cut(">=", Decimal(500), "µg/L")``."""

    op: Op
    limit: Decimal
    unit: str

    def test(self, value: Decimal) -> bool:
        return bool(_OPS[self.op](value, self.limit))

    def __str__(self) -> str:
        return f"{_SYMBOLS[self.op]} {self.limit} {self.unit}".rstrip()


def cut(op: Op, limit: str, unit: str) -> Cut:
    return Cut(op, Decimal(limit), unit)


Points = int | Decimal


@dataclass(frozen=True)
class ScoreItem:
    """One line of a score: the value used, its unit, the rule, and the points or met/not met.

    ``status`` is ``met`` / ``not met`` for criteria, ``scored`` for point items, or ``missing`` /
    ``pending`` when the input is not there; ``points_lower``/``points_upper`` bound the points of a
    missing or partly known item. ``parts`` lists the components of a composite item (cytopenias).
    """

    name: str
    value: Decimal | bool | int | None
    unit: str
    threshold: str
    citation: str
    status: str
    points: Points | None = None
    points_lower: Points | None = None
    points_upper: Points | None = None
    met: bool | None = None
    note: str = ""
    parts: tuple[ScoreItem, ...] = ()

    @property
    def known(self) -> bool:
        return self.status not in ("missing", "pending")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "name": self.name, "value": self.value, "unit": self.unit, "threshold": self.threshold,
            "status": self.status, "points": self.points, "points_lower": self.points_lower,
            "points_upper": self.points_upper, "met": self.met, "citation": self.citation,
            "note": self.note,
        }  # fmt: skip
        if self.parts:
            d["parts"] = [p.to_dict() for p in self.parts]
        return jsonable(d)


def unknown_status(panel: LabPanel, *analytes: str) -> str:
    return "pending" if any(panel.is_pending(a) for a in analytes) else "missing"


def reported_note(panel: LabPanel, analyte: str, unit: str) -> str:
    """``"reported 133 mg/dL"`` when the lab's unit differs from the unit compared in."""
    v = panel.value(analyte)
    return f"reported {v}" if v is not None and v.reported_unit != unit else ""


def criterion(
    panel: LabPanel, name: str, analyte: str, rule: Cut, citation: str, *,
    points: int | None = None, note: str = "",
) -> ScoreItem:  # fmt: skip
    """A measured item, met when ``value rule.op rule.limit``; with ``points``, scored when met."""
    value = panel.quantity(analyte, rule.unit)
    notes = "; ".join(n for n in (reported_note(panel, analyte, rule.unit), note) if n)
    threshold = str(rule) if points is None else f"{rule}: {points}"
    if value is None:
        lower, upper = (None, None) if points is None else (0, points)
        return ScoreItem(name, None, rule.unit, threshold, citation, unknown_status(panel, analyte),
                         points_lower=lower, points_upper=upper, note=notes)  # fmt: skip
    met = rule.test(value)
    return scored_or_met(name, value, rule.unit, threshold, citation, met, points, notes)


def flag_item(
    panel: LabPanel, name: str, analyte: str, citation: str, *, points: int | None = None,
    value: bool | None = None, note: str = "",
) -> ScoreItem:  # fmt: skip
    """A yes/no item from the panel's flag (or ``value`` when given)."""
    flag = panel.flag(analyte) if value is None else value
    threshold = "present" if points is None else f"present: {points}"
    if flag is None:
        lower, upper = (None, None) if points is None else (0, points)
        return ScoreItem(name, None, "", threshold, citation, unknown_status(panel, analyte),
                         points_lower=lower, points_upper=upper, note=note)  # fmt: skip
    return scored_or_met(name, flag, "", threshold, citation, flag, points, note)


def scored_or_met(
    name: str, value: Decimal | bool | int, unit: str, threshold: str, citation: str, met: bool,
    points: int | None, note: str = "", parts: tuple[ScoreItem, ...] = (),
) -> ScoreItem:  # fmt: skip
    head = (name, value, unit, threshold, citation)
    if points is None:
        return ScoreItem(*head, "met" if met else "not met", met=met, note=note, parts=parts)
    got = points if met else 0
    return ScoreItem(*head, "scored", got, got, got, met, note, parts)


def tally(flags: Iterable[bool | None]) -> tuple[int, int]:
    """``(number met, number unknown)`` of tri-state flags."""
    flags = list(flags)
    return sum(f is True for f in flags), sum(f is None for f in flags)


def side(lower: Points | None, upper: Points | None, cutoff: Points) -> bool | None:
    """``True`` if both bounds are ``>= cutoff``, ``False`` if both are below, else ``None``."""
    if lower is None or upper is None:
        return None
    if lower >= cutoff:
        return True
    if upper < cutoff:
        return False
    return None


def missing_names(items: Iterable[ScoreItem]) -> tuple[str, ...]:
    """Names of missing or pending items, composite parts included (``"Cytopenias: Platelets"``)."""
    names: list[str] = []
    for item in items:
        if item.parts:
            names += [f"{item.name}: {p.name}" for p in item.parts if not p.known]
        elif not item.known:
            names.append(item.name)
    return tuple(names)


#: Where the common 38.5 °C fever threshold comes from (it is not in HLH-2004, spec §2.5).
FEVER_THRESHOLD_SOURCE = "Jordan et al., Blood 2011"


def fever(panel: LabPanel, threshold_c: Decimal | None) -> tuple[bool | None, str]:
    """The fever flag and a note: the clinician's ``fever`` when given; else, with
    ``threshold_c``, ``temperature >= threshold_c``; else unknown, and a temperature that was
    given is named in the note (it is not a fever finding by itself: spec §2.5)."""
    flag = panel.flag("fever")
    if flag is not None:
        return flag, ""
    temperature = panel.quantity("temperature", "°C")
    if temperature is None:
        return None, ""
    measured = f"temperature {fmt(round(temperature, 2))} °C"
    if threshold_c is None:
        return None, (f"no fever finding recorded ({measured} given; record fever yes/no, or set "
                      f"a fever threshold such as 38.5 °C, {FEVER_THRESHOLD_SOURCE})")  # fmt: skip
    febrile = temperature >= threshold_c
    relation = "≥" if febrile else "<"
    note = f"from {measured} {relation} {fmt(threshold_c)} °C (user-set threshold)"
    return febrile, note


def resolve_marrow(panel: LabPanel, suggested: bool | None) -> tuple[bool | None, str]:
    """The marrow-hemophagocytosis finding and its source: the pathologist's value in the panel
    wins; otherwise the image suggestion, if any."""
    given = panel.flag("marrow_hemophagocytosis")
    if given is not None:
        return given, MARROW_FROM_PANEL
    if suggested is not None:
        return suggested, MARROW_FROM_IMAGE
    return None, ""


def jsonable(obj: Any) -> Any:
    """``obj`` with decimals as JSON numbers (integers when whole) and tuples as lists."""
    if isinstance(obj, Decimal):
        return int(obj) if obj == obj.to_integral_value() else float(obj)
    if isinstance(obj, dict):
        return {k: jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    return obj
