"""Reading lab panels from JSON, YAML and CSV files (or a folder of them).

Layouts:

* **JSON / YAML**: one sample ``{"sample": "P1", "ferritin": "3000 ng/mL", "fever": true, ...}``
  (without ``"sample"`` the file name without extension names it); a list of such objects (or
  ``{"samples": [...]}``); or a mapping ``{"P1": {...}, "P2": {...}}``. ``"notes"`` is ignored.
  Values are ``"3000 ng/mL"`` or ``{"value": 3000, "unit": "ng/mL"}``; flags are booleans or words.
* **CSV, wide**: one row per sample, a ``sample`` column and one column per analyte. A cell holds a
  value with its unit (``3000 ng/mL``), or a plain number when the column header names the unit in
  brackets: ``ferritin (ng/mL)`` or ``Plt [x10^9/L]``.
* **CSV, long**: columns ``sample, analyte, value, unit`` (``unit`` may be empty for flags or when
  ``value`` carries it), one row per measurement.

CSV files may be comma-, semicolon- or tab-separated (guessed from the header), UTF-8 with or
without BOM; blank rows and rows starting with ``#`` are skipped. Any problem raises
:class:`~hemoscan.errors.LabFileError` or :class:`~hemoscan.errors.LabValueError` naming the file.

Hostile files are refused, never half-read: an analyte given twice in any form (a repeated
JSON or YAML key, two columns naming one analyte, two long-format rows, an alias beside its
name) is an error naming both; YAML anchors and aliases (``&``, ``*``: alias bombs) are
refused; numbers are bounded (:data:`~hemoscan.labs.panel.MAX_DIGITS` digits, magnitudes
within 1e±:data:`~hemoscan.labs.panel.MAX_EXPONENT`) as are nesting depth and the size of
JSON / YAML files (:data:`MAX_DOCUMENT_BYTES`, read whole). CSV files are streamed: a wide CSV
holds one row at a time, so memory does not grow with the number of samples beyond the names
kept to refuse a repeated sample; a long CSV is read twice, so that a sample's panel is made as
soon as its last row is read (one sample at a time when each sample's rows are together).
"""

from __future__ import annotations

import csv
import itertools
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import yaml

from hemoscan.errors import LabFileError, LabValueError
from hemoscan.labs.analytes import resolve_analyte
from hemoscan.labs.panel import MAX_DIGITS, LabPanel, parse_panel

_META_KEYS = ("sample", "notes")
_SAMPLE_COLUMNS = ("sample", "sample_id", "sample id", "sampleid")
_HEADER_UNIT = re.compile(r"^(.*?)\s*[\[(]\s*(.*?)\s*[\])]$")
#: JSON and YAML lab files are parsed whole: larger ones are refused (use a CSV, streamed).
MAX_DOCUMENT_BYTES: dict[str, int] = {".json": 16 << 20, ".yaml": 2 << 20, ".yml": 2 << 20}
#: Longest number token read (sign, digits, point, exponent): bounds parsing work.
_MAX_NUMBER_CHARS = MAX_DIGITS + 12


def read_lab_panels(path: str | Path) -> list[LabPanel]:
    """Every sample's panel in a ``.json``/``.yaml``/``.yml``/``.csv`` file or in a folder of them.

    Sample names must be unique across everything read. See :func:`iter_lab_panels` to
    stream a large file.
    """
    return list(iter_lab_panels(path))


def iter_lab_panels(path: str | Path) -> Iterator[LabPanel]:
    """The panels of :func:`read_lab_panels`, one at a time (a large CSV is never held whole).

    An error in the file is raised when iteration reaches it, after the panels before it.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(
            p for p in path.iterdir()
            if p.is_file() and p.suffix.lower() in _READERS and not p.name.startswith(".")
        )  # fmt: skip
        if not files:
            raise LabFileError(f"{path}: folder holds no lab-panel file ({', '.join(_READERS)})")
    elif path.is_file():
        files = [path]
    else:
        raise LabFileError(f"{path}: no such lab-panel file or folder")
    seen: dict[str, int] = {}  # sample -> index of its file
    for i, file in enumerate(files):
        for panel in read_lab_file(file):
            if panel.sample in seen:
                name, first = panel.sample, files[seen[panel.sample]]
                raise LabFileError(f"{file}: sample {name!r} appears twice (also in {first})")
            seen[panel.sample] = i
            yield panel


def read_lab_file(path: Path) -> Iterator[LabPanel]:
    """The panels in one file, by its extension, streamed."""
    suffix = path.suffix.lower()
    reader = _READERS.get(suffix)
    if reader is None:
        raise LabFileError(f"{path}: unsupported lab-panel file type (use {', '.join(_READERS)})")
    limit = MAX_DOCUMENT_BYTES.get(suffix)
    try:
        size = path.stat().st_size
        if limit is not None and size > limit:
            raise LabFileError(
                f"{path}: holds {size:,} bytes, more than the {limit:,} a {suffix} lab file may "
                "hold (it is read whole); give large panels as a CSV file, which is streamed"
            )
        with open(path, encoding="utf-8-sig", newline="") as f:
            yield from reader(f, path)
    except (OSError, UnicodeDecodeError) as e:
        raise LabFileError(f"{path}: cannot read lab-panel file: {e}") from None
    except RecursionError:
        raise LabFileError(f"{path}: nested too deeply to be a lab panel") from None


def _json_number(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    def parse(token: str) -> Any:
        if len(token) > _MAX_NUMBER_CHARS:
            raise _Refused(f"number {token[:20]}... has more than {MAX_DIGITS} digits")
        return kind(token)

    return parse


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    d: dict[str, Any] = {}
    for key, value in pairs:
        if key in d:
            raise _Refused(f"key {key!r} is given twice in one object ({d[key]!r} and {value!r})")
        d[key] = value
    return d


class _Refused(ValueError):
    """A file construct refused while parsing; re-raised as a LabFileError naming the file."""


def _read_json(f: IO[str], path: Path) -> Iterator[LabPanel]:
    try:
        data = json.load(f, parse_float=_json_number(Decimal), parse_int=_json_number(int),
                         parse_constant=_no_constant, object_pairs_hook=_unique_keys)  # fmt: skip
    except _Refused as e:
        raise LabFileError(f"{path}: {e}") from None
    except ValueError as e:  # json.JSONDecodeError among them
        raise LabFileError(f"{path}: invalid JSON: {e}") from None
    return _from_object(data, path)


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a number")


def _read_yaml(f: IO[str], path: Path) -> Iterator[LabPanel]:
    try:
        data = yaml.load(f, Loader=_strict_yaml_loader())  # noqa: S506 - a SafeLoader subclass
    except _Refused as e:
        raise LabFileError(f"{path}: {e}") from None
    except (yaml.YAMLError, ValueError) as e:
        raise LabFileError(f"{path}: invalid YAML: {e}") from None
    return _from_object(data, path)


def _strict_yaml_loader() -> type:
    """PyYAML's SafeLoader without anchors and aliases (no alias bombs, no merge keys) and with
    repeated mapping keys refused."""
    class StrictLoader(yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
                line = event.start_mark.line + 1
                raise _Refused(
                    f"line {line}: YAML anchors and aliases (& and *) are not accepted; "
                    "write each value out"
                )
            return super().compose_node(parent, index)

        def construct_mapping(self, node: Any, deep: bool = False) -> Any:
            first: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                line = key_node.start_mark.line + 1
                try:
                    if key in first:
                        raise _Refused(
                            f"key {key!r} is given twice in one mapping (lines {first[key]} "
                            f"and {line})"
                        )
                    first[key] = line
                except TypeError:
                    break  # an unhashable key: SafeLoader refuses it with its own message
            return super().construct_mapping(node, deep=deep)

    return StrictLoader


def _one(sample: Any, entries: Mapping[Any, Any], path: Path) -> LabPanel:
    values = {str(k): v for k, v in entries.items() if k not in _META_KEYS}
    return parse_panel(str(sample), values, str(path))


def _from_object(data: Any, path: Path) -> Iterator[LabPanel]:
    if isinstance(data, Mapping) and set(data) == {"samples"} and isinstance(data["samples"], list):
        data = data["samples"]
    if isinstance(data, list):
        for i, item in enumerate(data, 1):
            if not isinstance(item, Mapping) or "sample" not in item:
                raise LabFileError(f"{path}: entry {i} is not an object with a 'sample' name")
            yield _one(item["sample"], item, path)
    elif isinstance(data, Mapping):
        keys = [k for k in data if k not in _META_KEYS]
        if "sample" in data or not keys or any(resolve_analyte(str(k)) for k in keys):
            yield _one(data.get("sample", path.stem), data, path)
        elif all(isinstance(data[k], Mapping) for k in keys):
            for sample in keys:
                yield _one(sample, data[sample], path)
        else:
            yield _one(path.stem, data, path)
    else:
        raise LabFileError(f"{path}: expected a sample object, a list of them or a mapping")


def _csv_rows(f: IO[str], path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(row number, stripped cells)`` of the CSV in ``f``, the header first (row 1); blank
    and ``#`` lines skipped, the delimiter guessed from the header line."""
    lines = (ln for ln in f if ln.strip() and not ln.lstrip().startswith("#"))
    first = next(lines, None)
    if first is None:
        raise LabFileError(f"{path}: empty CSV file")
    delimiter = max((",", ";", "\t"), key=first.count)
    reader = csv.reader(itertools.chain([first], lines), delimiter=delimiter)
    n = 0
    try:
        for n, row in enumerate(reader, 1):
            yield n, [cell.strip() for cell in row]
    except csv.Error as e:
        raise LabFileError(f"{path}: unreadable CSV near data row {n + 1}: {e}") from None


def _read_csv(f: IO[str], path: Path) -> Iterator[LabPanel]:
    rows = _csv_rows(f, path)
    _, header = next(rows)
    keys = [h.lower() for h in header]
    sample_col = next((keys.index(c) for c in _SAMPLE_COLUMNS if c in keys), None)
    if sample_col is None:
        raise LabFileError(f"{path}: CSV needs a 'sample' column (header: {', '.join(header)})")
    if "analyte" in keys and "value" in keys:

        def body() -> Iterator[tuple[int, str, list[str]]]:
            f.seek(0)
            rows = _csv_rows(f, path)
            next(rows)
            return _checked_rows(rows, len(header), sample_col, path)

        return _long_csv(keys, body, path)
    return _wide_csv(header, sample_col, _checked_rows(rows, len(header), sample_col, path), path)


def _checked_rows(
    rows: Iterable[tuple[int, list[str]]], width: int, sample_col: int, path: Path
) -> Iterator[tuple[int, str, list[str]]]:
    """``(row number, sample, cells)`` of the data rows, each with a sample and ``width`` cells."""
    for n, row in rows:
        if len(row) != width:
            raise LabFileError(f"{path}: data row {n} has {len(row)} cells, the header has {width}")
        if not row[sample_col]:
            raise LabFileError(f"{path}: data row {n} has no sample name")
        yield n, row[sample_col], row


def _analyte_key(name: str) -> str:
    """What two spellings of one analyte share: its canonical name, else the name itself."""
    analyte = resolve_analyte(name)
    return analyte.name if analyte else name.strip().lower()


def _long_csv(
    keys: list[str], body: Callable[[], Iterator[tuple[int, str, list[str]]]], path: Path
) -> Iterator[LabPanel]:
    """Two passes over the rows: the first finds each sample's last row, the second yields a
    sample's panel (in order of first appearance) once its last row is read, so only samples
    whose rows are still to come are held: one at a time when each sample's rows are together."""
    analyte_col, value_col = keys.index("analyte"), keys.index("value")
    unit_col = keys.index("unit") if "unit" in keys else None
    last = {sample: n for n, sample, _ in body()}
    pending: OrderedDict[str, dict[str, tuple[int, str, str, str]]] = OrderedDict()
    for n, sample, row in body():
        analyte, value = row[analyte_col], row[value_col]
        unit = row[unit_col] if unit_col is not None else ""
        entries = pending.setdefault(sample, {})
        key = _analyte_key(analyte)
        if key in entries:
            m, first_name, *_ = entries[key]
            raise LabValueError(
                f"{path}: sample {sample!r}, {analyte}: given twice "
                f"(data row {m} as {first_name!r} and data row {n} as {analyte!r})"
            )
        entries[key] = (n, analyte, value, unit)
        while pending and last[next(iter(pending))] <= n:
            done, entries = pending.popitem(last=False)
            raw = {a: {"value": v, "unit": u} if u else v for _, a, v, u in entries.values()}
            yield parse_panel(done, raw, str(path))


def _wide_csv(
    header: list[str], sample_col: int, body: Iterable[tuple[int, str, list[str]]], path: Path
) -> Iterator[LabPanel]:
    columns: list[tuple[int, str, str]] = []
    by_analyte: dict[str, int] = {}
    for i, name in enumerate(header):
        if i == sample_col:
            continue
        m = _HEADER_UNIT.match(name)
        column = (i, m.group(1), m.group(2)) if m else (i, name, "")
        key = _analyte_key(column[1])
        if key in by_analyte:
            j = by_analyte[key]
            raise LabFileError(
                f"{path}: columns {j + 1} ({header[j]!r}) and {i + 1} ({name!r}) both give "
                f"{key}; keep one"
            )
        by_analyte[key] = i
        columns.append(column)
    seen: set[str] = set()
    for n, sample, row in body:
        if sample in seen:
            raise LabFileError(f"{path}: sample {sample!r} has two rows (data row {n})")
        seen.add(sample)
        entries = {name: {"value": row[i], "unit": u} if u else row[i] for i, name, u in columns}
        yield parse_panel(sample, entries, str(path))


_READERS: dict[str, Callable[[IO[str], Path], Iterator[LabPanel]]] = {
    ".json": _read_json,
    ".yaml": _read_yaml,
    ".yml": _read_yaml,
    ".csv": _read_csv,
}
