"""The one conversion table for lab units, in exact decimal arithmetic.

Each :class:`Quantity` has a canonical unit and the units labs report it in. A unit converts to
the canonical one by ``canonical = (value + offset) * mul / div``; conversions between two units
are done in one step with a single division, so exact relations stay exact (4.5 g/L -> 450 mg/dL,
101.12 °F -> 38.4 °C, 28 days -> 4 weeks). Factors follow §0 of the spec
(``/work/shared/specs/lab-scores.md``):

* triglycerides: mg/dL = mmol/L x 88.57; g/L = mg/dL / 100 (French labs report TG in g/L)
* fibrinogen: mg/dL = g/L x 100
* counts: x10^9/L = x10^3/µL = (cells/µL) / 1000 = (cells/mm³) / 1000
* haemoglobin: g/L = g/dL x 10; mmol/L (Fe) = g/dL x 0.6206
* AST, LDH: U/L = µkat/L x 60
* temperature: °C = (°F - 32) x 5/9
* age: days and weeks via 365.25 days a year, months via 12 a year

Unit spellings are matched after :func:`normalize_unit` (µ/u/mc, ×/x, superscripts, spaces, case),
and only within the quantity of the analyte, so ``G/L`` is giga-cells per litre for a count and
grams per litre for fibrinogen.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cached_property, lru_cache

_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹", "0123456789")
_SUPERSCRIPT_RUN = re.compile(r"[⁰¹²³⁴⁵⁶⁷⁸⁹]+")


@lru_cache(maxsize=4096)
def normalize_unit(text: str) -> str:
    """A unit spelling reduced to a lookup key: ``"×10⁹ /L"``, ``"10E9/L"`` -> ``"10^9/l"``."""
    s = _SUPERSCRIPT_RUN.sub(lambda m: "^" + m.group(0).translate(_SUPERSCRIPTS), text.strip())
    for old, new in (("µ", "u"), ("μ", "u"), ("×", "x"), ("⨯", "x"), ("·", "x"), ("**", "^"),
                     ("°", ""), ("º", "")):  # fmt: skip
        s = s.replace(old, new)
    s = re.sub(r"\s+", "", s).lower()
    s = re.sub(r"^[x*]?10[e^](\d)", r"10^\1", s)
    s = re.sub(r"^[x*]10\(?(\d)\)?", r"10^\1", s)
    s = re.sub(r"mc(?=g|l\b|l/|kat)", "u", s)
    s = s.replace("cells", "").replace("cell", "").replace("mm^3", "mm3")
    s = {"degc": "c", "celsius": "c", "degf": "f", "fahrenheit": "f"}.get(s, s)
    return s


@dataclass(frozen=True)
class Unit:
    """A unit: ``symbol`` is its display spelling; ``canonical = (value + offset) * mul / div``."""

    symbol: str
    mul: Decimal = Decimal(1)
    div: Decimal = Decimal(1)
    offset: Decimal = Decimal(0)
    spellings: tuple[str, ...] = ()

    @cached_property
    def keys(self) -> frozenset[str]:
        return frozenset(normalize_unit(s) for s in (self.symbol, *self.spellings))


def convert(value: Decimal, source: Unit, target: Unit) -> Decimal:
    """``value`` in ``source`` expressed in ``target`` (both of one quantity), with one division."""
    if source == target:
        return value
    scaled = (value + source.offset) * source.mul * target.div
    return scaled / (source.div * target.mul) - target.offset


@dataclass(frozen=True)
class Quantity:
    """A measured quantity: its canonical unit first, then the other accepted units.

    ``rejected`` maps a normalised spelling to why that unit is refused (e.g. ferritin in pmol/L).
    """

    name: str
    units: tuple[Unit, ...]
    rejected: dict[str, str] = field(default_factory=dict)

    @property
    def canonical(self) -> Unit:
        return self.units[0]

    @property
    def accepted(self) -> str:
        return ", ".join(u.symbol for u in self.units)

    def find(self, text: str) -> Unit | None:
        key = normalize_unit(text)
        return next((u for u in self.units if key in u.keys), None)

    def unit(self, symbol: str) -> Unit:
        found = self.find(symbol)
        if found is None:
            raise KeyError(f"{symbol!r} is not a unit of {self.name}")
        return found


def _d(x: str | int) -> Decimal:
    return Decimal(x)


TEMPERATURE = Quantity("temperature", (
    Unit("°C", spellings=("C", "degC", "deg C", "celsius")),
    Unit("°F", _d(5), _d(9), _d(-32), ("F", "degF", "deg F", "fahrenheit")),
))  # fmt: skip

FERRITIN = Quantity(
    "ferritin concentration",
    (Unit("ng/mL"), Unit("µg/L", spellings=("ug/L", "mcg/L"))),
    rejected={"pmol/l": "ferritin in pmol/L is not accepted (1 ng/mL ≈ 2.247 pmol/L, "
              "assay-dependent); report it in ng/mL or µg/L"},
)  # fmt: skip

TRIGLYCERIDES = Quantity("triglyceride concentration", (
    Unit("mmol/L"),
    Unit("mg/dL", div=_d("88.57")),
    Unit("g/L", mul=_d(100), div=_d("88.57")),
))  # fmt: skip

FIBRINOGEN = Quantity(
    "fibrinogen concentration",
    (Unit("g/L"), Unit("mg/dL", div=_d(100))),
    rejected={"umol/l": "fibrinogen in µmol/L is not accepted (the conversion assumes a "
              "molar mass); report it in g/L or mg/dL"},
)  # fmt: skip

CELL_COUNT = Quantity("cell count", (
    Unit("×10⁹/L", spellings=("x10^9/L", "10^9/L", "G/L", "/nL", "10^3/uL", "K/uL", "thou/uL",
                               "10^3/mm3", "K/mm3", "10^6/mL")),
    Unit("/µL", div=_d(1000), spellings=("/uL", "cells/uL", "/mm3", "cells/mm3", "/cumm")),
))  # fmt: skip

HEMOGLOBIN = Quantity("haemoglobin concentration", (
    Unit("g/dL"),
    Unit("g/L", div=_d(10)),
    Unit("mmol/L", div=_d("0.6206")),
))  # fmt: skip

ENZYME_ACTIVITY = Quantity("enzyme activity", (
    Unit("U/L", spellings=("IU/L", "mU/mL")),
    Unit("µkat/L", mul=_d(60), spellings=("ukat/L",)),
    Unit("nkat/L", mul=_d(60), div=_d(1000)),
))  # fmt: skip

ESR = Quantity(
    "erythrocyte sedimentation rate", (Unit("mm/h", spellings=("mm/hr", "mm/1h", "mm/hour")),)
)

SCD25_ACTIVITY = Quantity(
    "soluble IL-2 receptor (U/mL assay)", (Unit("U/mL", spellings=("kU/L",)),)
)

SCD25_MASS = Quantity("soluble IL-2 receptor (pg/mL assay)", (
    Unit("pg/mL", spellings=("ng/L",)),
    Unit("ng/mL", mul=_d(1000)),
))  # fmt: skip

AGE = Quantity("age", (
    Unit("years", spellings=("year", "y", "yr", "yrs", "yo")),
    Unit("months", div=_d(12), spellings=("month", "mo", "mos", "mon")),
    Unit("weeks", mul=_d(7), div=_d("365.25"), spellings=("week", "wk", "wks", "w")),
    Unit("days", div=_d("365.25"), spellings=("day", "d")),
))  # fmt: skip

QUANTITIES: tuple[Quantity, ...] = (
    TEMPERATURE, FERRITIN, TRIGLYCERIDES, FIBRINOGEN, CELL_COUNT, HEMOGLOBIN, ENZYME_ACTIVITY, ESR,
    SCD25_ACTIVITY, SCD25_MASS, AGE,
)  # fmt: skip
