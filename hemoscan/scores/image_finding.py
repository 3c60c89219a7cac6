"""From scan findings to the marrow-hemophagocytosis item, and research context.

Neither HScore nor HLH-2004 defines marrow hemophagocytosis by a count, and no consensus threshold
exists (spec §7.1), so the suggestion uses an explicit, configurable :class:`MarrowRule`. Default:
at least one definite hemophagocyte holding a nucleated cell (spec §7.3). The item has three
states (:func:`marrow_item`): ``suggested present`` when the rule is met; ``not seen`` otherwise,
which the scores treat as unknown (not seeing something among the cells scanned is no evidence
that it is absent, so its points stay open); and the pathologist's yes/no from the lab panel,
which always wins (:func:`hemoscan.scores.base.resolve_marrow`).

:func:`gars_research_context` reports the quantitative thresholds of Gars et al. 2018 as research
context only: none of these counts is a validated stand-alone diagnostic criterion, and Ho et al.
2014 found that the amount of marrow hemophagocytosis did not correlate with HLH probability.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from hemoscan.datamodel import ENGULFED_TYPES, SampleFindings

GARS_CITATION = (
    "Gars E, Purington N, Scott G, Chisholm K, Gratzinger D, Martin BA, Ohgami RS. Bone marrow "
    "histomorphological criteria can accurately diagnose hemophagocytic lymphohistiocytosis. "
    "Haematologica. 2018;103(10):1635-1641. doi:10.3324/haematol.2017.186627"
)
HO_CITATION = (
    "Ho C, Yao X, Tian L, Li FY, Podoltsev N, Xu ML. Marrow assessment for hemophagocytic "
    "lymphohistiocytosis demonstrates poor correlation with disease probability. Am J Clin Pathol. "
    "2014;141(1):62-71. doi:10.1309/AJCPMD5TJEFOOVBW"
)
RESEARCH_CAVEAT = (
    "Research context only (Gars et al., Haematologica 2018;103(10):1635-1641): not a validated "
    "stand-alone diagnostic criterion; Gars counted per 1000 marrow cells, hemoscan per 1000 "
    "nucleated cells it detected; granulocyte/erythroblast counts depend on the model typing "
    "engulfed cells. Ho et al. (Am J Clin Pathol 2014) found no correlation between the amount "
    "of marrow hemophagocytosis and HLH probability."
)
#: Gars 2018 research thresholds, hemophagocytes per 1000 cells holding each engulfed type.
GARS_PER_1000: tuple[tuple[str, str, Decimal], ...] = (
    ("granulocyte", "granulocyte-holding hemophagocytes", Decimal(1)),
    ("erythroblast", "nucleated-RBC (erythroblast)-holding hemophagocytes", Decimal(4)),
)


@dataclass(frozen=True)
class MarrowRule:
    """Suggest marrow hemophagocytosis when, for any type in ``engulfed_types``, at least
    ``min_count`` definite hemophagocytes hold a cell of that type.

    Types are those of :data:`hemoscan.datamodel.ENGULFED_TYPES`; ``nucleated`` includes the typed
    nucleated subtypes. With several types the rule is checked per type (a hemophagocyte holding
    two listed types is not counted twice).
    """

    min_count: int = 1
    engulfed_types: tuple[str, ...] = ("nucleated",)

    def __post_init__(self) -> None:
        unknown = [t for t in self.engulfed_types if t not in ENGULFED_TYPES]
        if unknown or not self.engulfed_types:
            known = ", ".join(ENGULFED_TYPES)
            raise ValueError(f"engulfed_types must be among {known} (got {unknown or 'none'})")
        if self.min_count < 1:
            raise ValueError(f"min_count must be at least 1 (got {self.min_count})")

    def describe(self) -> str:
        kinds = " or ".join(self.engulfed_types)
        return f">= {self.min_count} definite hemophagocyte(s) holding a {kinds} cell"


DEFAULT_RULE = MarrowRule()


@dataclass(frozen=True)
class Suggestion:
    """The image's suggestion for the marrow item and why, for a pathologist to confirm:
    ``value`` is ``True`` when the rule is met, ``None`` (unknown) when it is not: the image
    never suggests that hemophagocytosis is absent."""

    value: bool | None
    reason: str


def suggest_marrow_hemophagocytosis(
    findings: SampleFindings, rule: MarrowRule = DEFAULT_RULE
) -> Suggestion:
    """Apply ``rule`` to ``findings.hemophagocytes_by_engulfed``."""
    assessed = findings.nucleated_cells_assessed
    if assessed == 0:
        tiles = findings.tiles_scanned
        return Suggestion(None, f"no nucleated cells assessed in {tiles} tile(s): no evidence")
    counts = {t: findings.hemophagocytes_by_engulfed.get(t, 0) for t in rule.engulfed_types}
    met = any(n >= rule.min_count for n in counts.values())
    found = ", ".join(f"{n} holding {t}" for t, n in counts.items())
    verdict = "rule met" if met else "rule not met"
    reason = f"{verdict} ({rule.describe()}): {found} among {assessed} nucleated cells assessed"
    return Suggestion(True if met else None, reason)


@dataclass(frozen=True)
class MarrowItem:
    """The marrow-hemophagocytosis item of one sample as the scores use it and a reader sees it.

    ``state``: ``"suggested present"``, ``"not seen"`` or ``"pathologist"``; ``value``: what
    the scores use (``True``; ``None``, unknown; or the pathologist's ``True``/``False``);
    ``label``: ``suggested present``, ``not seen (26 cells assessed)`` or ``pathologist: yes``;
    ``basis``: why (the rule and the counts, or the lab panel); ``rule_met``: whether the image
    meets the rule, whatever the pathologist said.
    """

    state: str
    value: bool | None
    label: str
    basis: str
    rule_met: bool

    @property
    def from_image(self) -> bool:
        """Whether the scores use the image's suggestion (so with/without differ)."""
        return self.state == "suggested present"


def marrow_item(
    findings: SampleFindings, pathologist: bool | None = None, rule: MarrowRule = DEFAULT_RULE
) -> MarrowItem:
    """The item's state: the pathologist's value (``pathologist``, from the lab panel) when
    given, else the image's suggestion under ``rule``."""
    suggestion = suggest_marrow_hemophagocytosis(findings, rule)
    if pathologist is not None:
        label = f"pathologist: {'yes' if pathologist else 'no'}"
        basis = f"lab panel (marrow_hemophagocytosis); the image: {suggestion.reason}"
        return MarrowItem("pathologist", pathologist, label, basis, bool(suggestion.value))
    if suggestion.value:
        return MarrowItem("suggested present", True, "suggested present", suggestion.reason, True)
    label = f"not seen ({findings.nucleated_cells_assessed} cells assessed)"
    basis = (f"{suggestion.reason}; not seeing it is no evidence of absence, so the scores keep "
             "its points open")  # fmt: skip
    return MarrowItem("not seen", None, label, basis, False)


def gars_research_context(findings: SampleFindings) -> list[str]:
    """Lines comparing the findings with the Gars 2018 research thresholds; never a diagnosis."""
    lines: list[str] = []
    assessed = findings.nucleated_cells_assessed
    for kind, label, limit in GARS_PER_1000:
        n = findings.hemophagocytes_by_engulfed.get(kind, 0)
        threshold = f"the research threshold >= {limit}/1000"
        if assessed == 0:
            lines.append(f"{label}: {n}; no nucleated cells assessed, rate per 1000 not available "
                         f"({threshold})")  # fmt: skip
            continue
        rate = (Decimal(1000) * n / assessed).quantize(Decimal("0.01"))
        reached = "reaches" if rate >= limit else "below"
        lines.append(f"{label}: {rate} per 1000 nucleated cells ({n}/{assessed}); "
                     f"{reached} {threshold}")  # fmt: skip
    several = findings.hemophagocytes_with_ge2_nucleated
    reached = "reaches" if several >= 1 else "below"
    lines.append(f"hemophagocytes holding several (>= 2) nucleated cells: {several}; {reached} the "
                 "research threshold >= 1")  # fmt: skip
    lines.append(RESEARCH_CAVEAT)
    return lines
