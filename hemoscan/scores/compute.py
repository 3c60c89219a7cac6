"""All scores of one lab panel, with the marrow item's source, in one JSON-ready record."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from hemoscan.labs.panel import LabPanel
from hemoscan.scores import ferritin_esr, hlh2004, hscore, mas2016, mh_score, ms_score
from hemoscan.scores.base import jsonable, resolve_marrow


@dataclass(frozen=True)
class ScoreSettings:
    """Configurable choices (spec §8); the defaults follow the primary papers.

    ``fever_threshold_c``: derive a missing ``fever`` flag from ``temperature`` (e.g. 38.5 °C,
    which is not in HLH-2004 itself); ``scd25_cutoff``: a laboratory sCD25 cut-off such as
    ``"1800 U/mL"``.
    """

    fever_threshold_c: Decimal | None = None
    scd25_cutoff: str | None = None
    ms_cutoff: Decimal = ms_score.CUTOFF
    ferritin_esr_cutoff: Decimal = ferritin_esr.CUTOFF


@dataclass(frozen=True)
class ScoreReport:
    sample: str
    marrow_hemophagocytosis: bool | None
    marrow_source: str
    hscore: hscore.HScoreResult
    hlh2004: hlh2004.HLH2004Result
    mas2016: mas2016.MAS2016Result
    ms_score: ms_score.MSScoreResult
    mh_score: mh_score.MHScoreResult
    ferritin_esr: ferritin_esr.FerritinESRResult

    def to_dict(self) -> dict[str, Any]:
        """``{"sample", "marrow_hemophagocytosis": {"value", "source"}, "hscore": {...}, ...}``."""
        return jsonable({
            "sample": self.sample,
            "marrow_hemophagocytosis": {
                "value": self.marrow_hemophagocytosis, "source": self.marrow_source,
            },
            "hscore": self.hscore.to_dict(),
            "hlh2004": self.hlh2004.to_dict(),
            "mas2016": self.mas2016.to_dict(),
            "ms_score": self.ms_score.to_dict(),
            "mh_score": self.mh_score.to_dict(),
            "ferritin_esr": self.ferritin_esr.to_dict(),
        })  # fmt: skip


def compute_all(
    panel: LabPanel,
    marrow_hemophagocytosis: bool | None = None,
    settings: ScoreSettings = ScoreSettings(),
) -> ScoreReport:
    """Every score of ``panel``. ``marrow_hemophagocytosis`` is the image suggestion, used for the
    HScore and HLH-2004 marrow items only when the panel has no pathologist's value; call once with
    and once without it to show both."""
    marrow, source = resolve_marrow(panel, marrow_hemophagocytosis)
    fever = settings.fever_threshold_c
    return ScoreReport(
        sample=panel.sample,
        marrow_hemophagocytosis=marrow,
        marrow_source=source,
        hscore=hscore.hscore(panel, marrow_hemophagocytosis),
        hlh2004=hlh2004.hlh2004(panel, marrow_hemophagocytosis, fever_threshold_c=fever,
                                scd25_cutoff=settings.scd25_cutoff),
        mas2016=mas2016.mas2016(panel, fever_threshold_c=fever),
        ms_score=ms_score.ms_score(panel, cutoff=settings.ms_cutoff, fever_threshold_c=fever),
        mh_score=mh_score.mh_score(panel),
        ferritin_esr=ferritin_esr.ferritin_esr(panel, cutoff=settings.ferritin_esr_cutoff),
    )  # fmt: skip
