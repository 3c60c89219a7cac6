"""Canonical analyte names, their aliases, units and plausible ranges.

Measured analytes carry a value and a unit of their quantity (:mod:`hemoscan.labs.units`); flags are
yes/no clinical findings. Names and aliases match case-insensitively, ignoring spaces, ``-``, ``_``
and ``.`` (``sIL-2R`` = ``sil2r``). Plausible ranges are in each quantity's canonical unit and are
there to catch unit mix-ups (fibrinogen 4.5 "mg/dL" is 4.5 g/L), not to judge disease.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache

from hemoscan.labs import units as u


@dataclass(frozen=True)
class Measure:
    """One accepted quantity of an analyte with its plausible canonical range.

    ``flag`` marks a quantity that is read but not compared with the published cut-offs.
    """

    quantity: u.Quantity
    low: Decimal
    high: Decimal
    flag: str = ""


@dataclass(frozen=True)
class Analyte:
    name: str
    label: str
    measures: tuple[Measure, ...] = ()
    aliases: tuple[str, ...] = ()

    @property
    def is_flag(self) -> bool:
        return not self.measures


def _m(quantity: u.Quantity, low: str, high: str, flag: str = "") -> tuple[Measure, ...]:
    return (Measure(quantity, Decimal(low), Decimal(high), flag),)


SCD25_MASS_FLAG = (
    "sCD25 reported in pg/mL: a different assay with no fixed conversion to U/mL; "
    "not compared with the HLH-2004 cut-off of 2400 U/mL unless a lab cut-off in pg/mL is given"
)

ANALYTES: tuple[Analyte, ...] = (
    Analyte("temperature", "Temperature (max)", _m(u.TEMPERATURE, "30", "45"),
            ("temp", "tmax", "max temperature", "maximum temperature", "body temperature")),
    Analyte("fever", "Fever", aliases=("febrile",)),
    Analyte("immunosuppression", "Known immunosuppression",
            aliases=("immunosuppressed", "known immunosuppression", "immunosuppressive therapy")),
    Analyte("hepatomegaly", "Hepatomegaly", aliases=("enlarged liver",)),
    Analyte("splenomegaly", "Splenomegaly", aliases=("enlarged spleen",)),
    Analyte("hemoglobin", "Haemoglobin", _m(u.HEMOGLOBIN, "1", "25"),
            ("hb", "hgb", "haemoglobin")),
    Analyte("leukocytes", "Leukocytes", _m(u.CELL_COUNT, "0.01", "1000"),
            ("wbc", "leucocytes", "leukocyte count", "white blood cells", "white cell count")),
    Analyte("neutrophils", "Neutrophils", _m(u.CELL_COUNT, "0", "500"),
            ("anc", "neutrophil count", "absolute neutrophil count", "neut", "neutrophiles")),
    Analyte("platelets", "Platelets", _m(u.CELL_COUNT, "1", "5000"),
            ("plt", "plts", "platelet count", "thrombocytes")),
    Analyte("ferritin", "Ferritin", _m(u.FERRITIN, "0", "1000000"), ("serum ferritin",)),
    Analyte("triglycerides", "Triglycerides", _m(u.TRIGLYCERIDES, "0.1", "150"),
            ("tg", "trig", "triglyceride", "fasting triglycerides")),
    Analyte("fibrinogen", "Fibrinogen", _m(u.FIBRINOGEN, "0.2", "15"), ("fib", "fbg")),
    Analyte("ast", "AST", _m(u.ENZYME_ACTIVITY, "2", "50000"),
            ("sgot", "asat", "got", "aspartate aminotransferase")),
    Analyte("ldh", "LDH", _m(u.ENZYME_ACTIVITY, "20", "100000"), ("ld", "lactate dehydrogenase")),
    Analyte("esr", "ESR", _m(u.ESR, "0", "200"),
            ("sed rate", "sedimentation rate", "erythrocyte sedimentation rate")),
    Analyte("scd25", "sCD25 (sIL-2R)",
            _m(u.SCD25_ACTIVITY, "0", "1000000")
            + _m(u.SCD25_MASS, "0", "100000000", SCD25_MASS_FLAG),
            ("sil2r", "soluble cd25", "soluble il-2 receptor", "il2r")),
    Analyte("nk_activity_low", "Low/absent NK-cell activity",
            aliases=("nk activity low", "low nk activity", "nk low", "nk cell activity low")),
    Analyte("molecular_diagnosis", "Molecular diagnosis consistent with HLH",
            aliases=("molecular", "genetic diagnosis", "hlh mutation")),
    Analyte("age", "Age", _m(u.AGE, "0", "130"), ("age at onset",)),
    Analyte("cns_involvement", "CNS involvement", aliases=("cns", "cns dysfunction")),
    Analyte("hemorrhage", "Haemorrhagic manifestations",
            aliases=("haemorrhage", "hemorrhagic manifestations", "haemorrhagic manifestations",
                     "bleeding")),
    Analyte("active_arthritis", "Active arthritis", aliases=("arthritis",)),
    Analyte("sjia", "Known or suspected sJIA",
            aliases=("systemic jia", "systemic juvenile idiopathic arthritis", "suspected sjia")),
    Analyte("marrow_hemophagocytosis", "Bone-marrow hemophagocytosis",
            aliases=("marrow haemophagocytosis", "bm hemophagocytosis",
                     "bone marrow hemophagocytosis", "hemophagocytosis", "haemophagocytosis")),
    # Not in the issue's list: the user-asserted exclusion in the 2016 MAS criteria' footnote [R].
    Analyte("alternative_explanation", "Abnormal labs explained by another condition",
            aliases=("labs explained otherwise",)),
)  # fmt: skip

BY_NAME: dict[str, Analyte] = {a.name: a for a in ANALYTES}


def _key(name: str) -> str:
    return re.sub(r"[\s\-_.]+", "", name.strip().lower())


_LOOKUP: dict[str, Analyte] = {_key(n): a for a in ANALYTES for n in (a.name, *a.aliases)}


@lru_cache(maxsize=4096)
def resolve_analyte(name: str) -> Analyte | None:
    """The analyte a (case-insensitive) name or alias refers to, or ``None``."""
    return _LOOKUP.get(_key(name))
