"""HLH / MAS scores from a lab panel: one small, table-driven, cited module each.

``compute_all(panel, marrow_hemophagocytosis=None)`` returns every score of one sample; each result
lists every item (value used, unit, threshold, points or met/not met, citation), lower and upper
bounds when data are missing, and only states a call when both bounds agree. Research use only.

Modules: :mod:`.hscore` (Fardet 2014), :mod:`.hlh2004` (Henter 2007), :mod:`.mas2016`
(Ravelli 2016), :mod:`.ms_score` (Minoia 2019), :mod:`.mh_score` (Minoia 2017),
:mod:`.ferritin_esr` (Eloseily 2019), :mod:`.image_finding` (scan -> marrow item; Gars 2018).
"""

from hemoscan.scores.base import ScoreItem
from hemoscan.scores.compute import ScoreReport, ScoreSettings, compute_all
from hemoscan.scores.image_finding import (
    MarrowItem,
    MarrowRule,
    Suggestion,
    gars_research_context,
    marrow_item,
    suggest_marrow_hemophagocytosis,
)

__all__ = [
    "MarrowItem",
    "MarrowRule",
    "ScoreItem",
    "ScoreReport",
    "ScoreSettings",
    "Suggestion",
    "compute_all",
    "gars_research_context",
    "marrow_item",
    "suggest_marrow_hemophagocytosis",
]
