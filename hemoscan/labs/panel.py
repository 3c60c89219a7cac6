"""One sample's lab panel: values with units in exact decimals, and yes/no clinical flags.

:func:`parse_panel` turns raw entries (as read from JSON, YAML or CSV) into a :class:`LabPanel`.
A value is ``"3000 ng/mL"``, ``{"value": 3000, "unit": "ng/mL"}`` or, for flags, a boolean or a
word (yes/no, true/false, present/absent, positive/negative, 1/0). ``pending`` marks a test sent
out and not back; empty, ``n/a``, ``not done`` and ``unknown`` mean not available. Every problem
(unknown analyte or unit, missing unit, a unit of another quantity, a negative or implausible value)
raises :class:`~hemoscan.errors.LabValueError` naming the sample, the analyte and the problem.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from hemoscan.errors import LabValueError
from hemoscan.labs import units as u
from hemoscan.labs.analytes import BY_NAME, Analyte, Measure, resolve_analyte

_TRUE = frozenset({"yes", "y", "true", "t", "1", "present", "positive", "pos", "+"})
_FALSE = frozenset({"no", "n", "false", "f", "0", "absent", "negative", "neg", "-"})
_PENDING = frozenset({"pending", "sent", "sent out", "awaited"})
_NOT_AVAILABLE = frozenset({"", "n/a", "na", "nd", "not done", "unknown"})
_NUMBER_UNIT = re.compile(r"^([+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)\s*(.*)$", re.DOTALL)
#: Most significant digits of a reported number, and the largest power of ten (either way)
#: of its magnitude: far beyond any lab value, small enough that exact arithmetic never
#: overflows or runs long.
MAX_DIGITS = 30
MAX_EXPONENT = 30
_VALUE_KEYS = frozenset({"value", "unit", "note"})


def fmt(value: Decimal) -> str:
    """A decimal without exponent or trailing zeros: ``Decimal("3.000E+3")`` -> ``"3000"``."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "") else text


@dataclass(frozen=True)
class LabValue:
    """A measured value: ``value`` in ``unit`` (its quantity's canonical unit), as reported.

    ``reported_value``/``reported_unit`` are the number and the recognised unit the lab gave;
    ``reported`` is the text as written. ``flag`` says why the value is not comparable with the
    published cut-offs (sCD25 in pg/mL), else ``""``.
    """

    analyte: str
    value: Decimal
    unit: str
    reported_value: Decimal
    reported_unit: str
    reported: str
    flag: str = ""

    @property
    def quantity(self) -> u.Quantity:
        measures = BY_NAME[self.analyte].measures
        return next(m.quantity for m in measures if m.quantity.canonical.symbol == self.unit)

    def in_unit(self, unit: str) -> Decimal:
        """The value in another unit of its quantity (exact when the lab reported in ``unit``)."""
        quantity = self.quantity
        target = quantity.unit(unit)
        if target == quantity.unit(self.reported_unit):
            return self.reported_value
        return u.convert(self.reported_value, quantity.unit(self.reported_unit), target)

    def to_dict(self) -> dict[str, str]:
        """As reported: ``{"value": "133", "unit": "mg/dL"}``."""
        return {"value": fmt(self.reported_value), "unit": self.reported_unit}

    def __str__(self) -> str:
        return f"{fmt(self.reported_value)} {self.reported_unit}"


@dataclass(frozen=True)
class LabPanel:
    """One sample's labs: ``values`` maps canonical analyte names to a :class:`LabValue` or a flag.

    ``pending`` holds analytes sent out and not yet back; absent analytes are simply unknown.
    """

    sample: str
    values: Mapping[str, LabValue | bool] = field(default_factory=dict)
    pending: frozenset[str] = frozenset()
    source: str = ""

    def value(self, analyte: str) -> LabValue | None:
        v = self.values.get(analyte)
        if isinstance(v, bool):
            raise TypeError(f"{analyte} is a yes/no flag, not a measured value")
        return v

    def quantity(self, analyte: str, unit: str) -> Decimal | None:
        """The value of ``analyte`` in ``unit``, or ``None`` when it was not reported."""
        v = self.value(analyte)
        return None if v is None else v.in_unit(unit)

    def flag(self, analyte: str) -> bool | None:
        v = self.values.get(analyte)
        if v is not None and not isinstance(v, bool):
            raise TypeError(f"{analyte} is a measured value, not a yes/no flag")
        return v

    def is_pending(self, analyte: str) -> bool:
        return analyte in self.pending

    def with_values(self, **values: LabValue | bool | None) -> LabPanel:
        """A copy with some values replaced (``None`` removes one)."""
        merged = {**self.values, **values}
        kept = {k: v for k, v in merged.items() if v is not None}
        return LabPanel(self.sample, kept, self.pending, self.source)

    def to_dict(self) -> dict[str, Any]:
        values = {k: v if isinstance(v, bool) else v.to_dict() for k, v in self.values.items()}
        return {"sample": self.sample, "values": values, "pending": sorted(self.pending)}


def _error(sample: str, analyte: str, problem: str, source: str) -> LabValueError:
    where = f"{source}: " if source else ""
    return LabValueError(f"{where}sample {sample!r}, {analyte}: {problem}")


def _to_decimal(raw: Any) -> Decimal | None:
    if isinstance(raw, bool):
        return None
    if isinstance(raw, Decimal):
        return raw
    if isinstance(raw, int):
        return Decimal(raw)
    if isinstance(raw, float):
        return Decimal(repr(raw))
    return None


def _split(raw: Any, problem: Callable[[str], LabValueError]) -> tuple[Decimal, str, str]:
    """``(number, unit written with it, unit of its field or column)`` from ``"3000 ng/mL"``, a
    number, or ``{"value": .., "unit": ..}``."""
    unit = ""
    if isinstance(raw, Mapping):
        extra = set(raw) - _VALUE_KEYS
        if extra or "value" not in raw:
            keys = sorted(map(str, raw))
            raise problem(f"a value object needs 'value' and 'unit' (got keys {keys})")
        unit = str(raw.get("unit") or "").strip()
        raw = raw["value"]
    number = _to_decimal(raw)
    if number is not None:
        return _bounded(number, raw, problem), "", unit
    if not isinstance(raw, str):
        raise problem(f"expected a number with a unit, got {_shown(raw)}")
    text = raw.strip().replace("−", "-")
    if text and text[0] in "<>≤≥":
        raise problem(f"censored value {raw!r} is not supported: give a number (e.g. the limit)")
    if "," in text:
        raise problem(f"{raw!r} is ambiguous: use '.' as decimal point, no thousands separator")
    match = _NUMBER_UNIT.match(text)
    if not match:
        raise problem(f"{_shown(raw)} is not a number with a unit")
    if len(match.group(1)) > MAX_DIGITS + 12:
        raise problem(f"{_shown(raw)}: {_out_of_bounds()}")
    try:
        number = Decimal(match.group(1))
    except InvalidOperation:
        raise problem(f"{_shown(raw)} is not a number") from None
    return _bounded(number, raw, problem), match.group(2).strip(), unit


def _out_of_bounds() -> str:
    return (
        f"a number hemoscan reads has at most {MAX_DIGITS} significant digits and a magnitude "
        f"between 1e-{MAX_EXPONENT} and 1e{MAX_EXPONENT}"
    )


def _shown(raw: Any, limit: int = 60) -> str:
    """``repr(raw)``, cut short: a hostile value does not flood the message."""
    text = repr(raw)
    return text if len(text) <= limit else f"{text[:limit]}..."


def _bounded(number: Decimal, raw: Any, problem: Callable[[str], LabValueError]) -> Decimal:
    """``number`` if finite and within :data:`MAX_DIGITS` / :data:`MAX_EXPONENT`."""
    if not number.is_finite():
        raise problem(f"{_shown(raw)} is not a finite number")
    digits, exponent = len(number.as_tuple().digits), number.as_tuple().exponent
    magnitude = abs(number.adjusted()) if number else 0
    if digits > MAX_DIGITS or magnitude > MAX_EXPONENT or abs(exponent) > MAX_DIGITS + MAX_EXPONENT:
        raise problem(f"{_shown(raw)}: {_out_of_bounds()}")
    return number


def _find_measure(analyte: Analyte, unit_text: str) -> tuple[Measure, u.Unit] | None:
    for measure in analyte.measures:
        unit = measure.quantity.find(unit_text)
        if unit is not None:
            return measure, unit
    return None


def _accepted(analyte: Analyte) -> str:
    return "; ".join(m.quantity.accepted for m in analyte.measures)


def _suggest(analyte: Analyte, number: Decimal, wrong: u.Unit) -> str:
    hits = []
    for measure in analyte.measures:
        for unit in measure.quantity.units:
            if unit == wrong:
                continue
            canonical = u.convert(number, unit, measure.quantity.canonical)
            if measure.low <= canonical <= measure.high:
                hits.append(f"{fmt(number)} {unit.symbol}")
    return f"; did you mean {' or '.join(hits)}?" if hits else ""


def parse_value(analyte: Analyte, raw: Any, sample: str, source: str = "") -> LabValue:
    """A measured value from its raw form, converted and checked (see the module docstring)."""

    def problem(text: str) -> LabValueError:
        return _error(sample, analyte.name, text, source)

    number, inline, field_unit = _split(raw, problem)
    if inline and field_unit:
        a, b = _find_measure(analyte, inline), _find_measure(analyte, field_unit)
        if a is None or b is None or a != b:
            raise problem(
                f"{raw!r} carries the unit {inline!r} but its column or field says {field_unit!r}"
            )
    unit_text = inline or field_unit
    if not unit_text:
        raise problem(f"value {fmt(number)} has no unit (accepted: {_accepted(analyte)})")
    found = _find_measure(analyte, unit_text)
    if found is None:
        key = u.normalize_unit(unit_text)
        for measure in analyte.measures:
            if key in measure.quantity.rejected:
                raise problem(measure.quantity.rejected[key])
        own = {m.quantity.name for m in analyte.measures}
        others = [q.name for q in u.QUANTITIES if q.name not in own and q.find(unit_text)]
        other = others[0] if others else ""
        kind = f"is a unit of {other}, not of {analyte.name}" if other else "is an unknown unit"
        raise problem(f"{unit_text!r} {kind} (accepted: {_accepted(analyte)})")
    measure, unit = found
    if number < 0:
        raise problem(f"negative value {fmt(number)} {unit.symbol} is impossible")
    canonical = u.convert(number, unit, measure.quantity.canonical)
    if not measure.low <= canonical <= measure.high:
        c = measure.quantity.canonical.symbol
        shown = f"{fmt(number)} {unit.symbol}" + (
            f" (= {fmt(round(canonical, 4))} {c})" if unit != measure.quantity.canonical else ""
        )
        raise problem(
            f"{shown} is outside the plausible range {fmt(measure.low)}-{fmt(measure.high)} {c}"
            f"{_suggest(analyte, number, unit)}"
        )
    reported = raw if isinstance(raw, str) else f"{fmt(number)} {unit_text}"
    return LabValue(analyte.name, canonical, measure.quantity.canonical.symbol, number, unit.symbol,
                    reported.strip(), measure.flag)  # fmt: skip


def parse_flag(analyte: Analyte, raw: Any, sample: str, source: str = "") -> bool:
    """A yes/no finding from a boolean, 1/0 or a word."""
    if isinstance(raw, Mapping) and set(raw) <= _VALUE_KEYS and "value" in raw:
        if str(raw.get("unit") or "").strip():
            problem = f"a yes/no finding takes no unit (got {raw['unit']!r})"
            raise _error(sample, analyte.name, problem, source)
        raw = raw["value"]
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, (int, Decimal)) and raw in (0, 1):
        return bool(raw)
    if isinstance(raw, str) and raw.strip().lower() in _TRUE | _FALSE:
        return raw.strip().lower() in _TRUE
    problem = f"expected yes/no (true/false, present/absent, 1/0), got {raw!r}"
    raise _error(sample, analyte.name, problem, source)


def _status(raw: Any) -> str:
    """``"pending"``, ``"missing"`` or ``""`` (a value to parse)."""
    text = raw.get("value") if isinstance(raw, Mapping) else raw
    if text is None:
        return "missing"
    if isinstance(text, str):
        word = text.strip().lower()
        if word in _PENDING:
            return "pending"
        if word in _NOT_AVAILABLE:
            return "missing"
    return ""


def parse_panel(sample: str, entries: Mapping[str, Any], source: str = "") -> LabPanel:
    """A :class:`LabPanel` from ``{name or alias: raw value}``; ``source`` prefixes errors."""
    sample = str(sample).strip()
    if not sample:
        raise LabValueError(f"{source or 'lab panel'}: a sample has an empty name")
    values: dict[str, LabValue | bool] = {}
    pending: set[str] = set()
    given: dict[str, str] = {}
    for name, raw in entries.items():
        analyte = resolve_analyte(str(name))
        if analyte is None:
            known = ", ".join(BY_NAME)
            problem = f"unknown analyte name (known: {known}; or aliases such as WBC, PLT, Hb, TG)"
            raise _error(sample, str(name), problem, source)
        if analyte.name in given:
            problem = f"given twice (as {given[analyte.name]!r} and {name!r})"
            raise _error(sample, analyte.name, problem, source)
        given[analyte.name] = str(name)
        status = _status(raw)
        if status == "pending":
            pending.add(analyte.name)
        elif not status:
            parse = parse_flag if analyte.is_flag else parse_value
            values[analyte.name] = parse(analyte, raw, sample, source)
    return LabPanel(sample, values, frozenset(pending), source)
