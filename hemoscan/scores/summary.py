"""One line per score, worded for a reader: the same text in ``hemoscan scores`` and the report.

A score with missing items is given as its range (``249 to 284``), never as one of its bounds,
and states a call only when both bounds agree (spec §0 rule 3).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from hemoscan.labs.panel import fmt
from hemoscan.scores.compute import ScoreReport

_CALL = {True: "positive", False: "negative", None: "undecided"}
#: Scores that use the marrow-hemophagocytosis item.
USES_MARROW = ("hscore", "hlh2004")


@dataclass(frozen=True)
class ScoreLine:
    """A score's one-line result: ``key`` (as in ``ScoreReport.to_dict()``), a short ``name``
    and the ``text``."""

    key: str
    name: str
    text: str

    @property
    def uses_marrow(self) -> bool:
        return self.key in USES_MARROW


def text(value: object, digits: int = 3) -> str:
    """A value as printed: ``-`` for none, yes/no, decimals rounded to ``digits`` places."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Decimal):
        return fmt(round(value, digits))
    return str(value)


def value_range(lower: object, upper: object) -> str:
    """``lower`` when both bounds agree, else ``lower to upper``."""
    return text(lower) if lower == upper else f"{text(lower)} to {text(upper)}"


def _missing(names: tuple[str, ...]) -> str:
    return f"; missing: {', '.join(names)}" if names else ""


def summary_lines(report: ScoreReport) -> list[ScoreLine]:
    """The six scores of ``report``, in the order the report and ``hemoscan scores`` show them."""
    hs, hlh, mas = report.hscore, report.hlh2004, report.mas2016
    ms, mh, fe = report.ms_score, report.mh_score, report.ferritin_esr
    hs_text = (f"{value_range(hs.lower, hs.upper)} ({hs.probability}), {_CALL[hs.positive]} "
               f"(>= {hs.cutoff}){_missing(hs.missing)}")  # fmt: skip
    if hs.note:
        hs_text += f"; {hs.note}"
    ms_text = ms.reason
    if ms.value is not None:
        bounds = "" if ms.lower == ms.upper else f" (range {value_range(ms.lower, ms.upper)})"
        ms_text = f"{text(ms.value)}{bounds}, {_CALL[ms.positive]} (>= {ms.cutoff})" + (
            f"; {ms.reason}" if ms.reason else "")  # fmt: skip
    mh_call = f"favours {mh.favours}" if mh.favours else "undecided"
    fe_text = fe.reason
    if fe.ratio is not None:
        side = "at or above" if fe.above_cutoff else "below"
        fe_text = f"{text(fe.ratio, 2)}, {side} {fe.cutoff}"
    return [
        ScoreLine("hscore", "HScore", hs_text),
        ScoreLine("hlh2004", "HLH-2004", f"{hlh.result} ({hlh.reason})"),
        ScoreLine("mas2016", "MAS 2016 (sJIA)", f"{mas.result} ({mas.reason})"),
        ScoreLine("ms_score", "MS score", ms_text),
        ScoreLine("mh_score", "MH score", f"{value_range(mh.lower, mh.upper)}, {mh_call} "
                                          f"(>= {mh.cutoff}: primary HLH){_missing(mh.missing)}"),
        ScoreLine("ferritin_esr", "Ferritin:ESR", fe_text),
    ]  # fmt: skip
