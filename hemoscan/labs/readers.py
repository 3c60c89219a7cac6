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
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

from hemoscan.errors import LabFileError, LabValueError
from hemoscan.labs.analytes import resolve_analyte
from hemoscan.labs.panel import LabPanel, parse_panel

_META_KEYS = ("sample", "notes")
_SAMPLE_COLUMNS = ("sample", "sample_id", "sample id", "sampleid")
_HEADER_UNIT = re.compile(r"^(.*?)\s*[\[(]\s*(.*?)\s*[\])]$")
#: A CSV data row: (sample name, cells by lower-cased header, cells in order).
_Row = tuple[str, dict[str, str], list[str]]


def read_lab_panels(path: str | Path) -> list[LabPanel]:
    """Every sample's panel in a ``.json``/``.yaml``/``.yml``/``.csv`` file or in a folder of them.

    Sample names must be unique across everything read.
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
    panels: list[LabPanel] = []
    seen: dict[str, Path] = {}
    for file in files:
        for panel in read_lab_file(file):
            if panel.sample in seen:
                name, first = panel.sample, seen[panel.sample]
                raise LabFileError(f"{file}: sample {name!r} appears twice (also in {first})")
            seen[panel.sample] = file
            panels.append(panel)
    return panels


def read_lab_file(path: Path) -> list[LabPanel]:
    """The panels in one file, by its extension."""
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise LabFileError(f"{path}: unsupported lab-panel file type (use {', '.join(_READERS)})")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise LabFileError(f"{path}: cannot read lab-panel file: {e}") from None
    return list(reader(text, path))


def _read_json(text: str, path: Path) -> Iterator[LabPanel]:
    try:
        data = json.loads(text, parse_float=Decimal)
    except json.JSONDecodeError as e:
        raise LabFileError(f"{path}: invalid JSON: {e}") from None
    return _from_object(data, path)


def _read_yaml(text: str, path: Path) -> Iterator[LabPanel]:
    try:
        import yaml
    except ImportError:
        message = f"{path}: reading YAML needs PyYAML (pip install pyyaml); or use JSON or CSV"
        raise LabFileError(message) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise LabFileError(f"{path}: invalid YAML: {e}") from None
    return _from_object(data, path)


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


def _read_csv(text: str, path: Path) -> Iterator[LabPanel]:
    lines = [ln for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise LabFileError(f"{path}: empty CSV file")
    delimiter = max((",", ";", "\t"), key=lines[0].count)
    reader = csv.reader(io.StringIO("\n".join(lines)), delimiter=delimiter)
    rows = [[cell.strip() for cell in row] for row in reader]
    header = rows[0]
    keys = [h.lower() for h in header]
    sample_col = next((keys.index(c) for c in _SAMPLE_COLUMNS if c in keys), None)
    if sample_col is None:
        raise LabFileError(f"{path}: CSV needs a 'sample' column (header: {', '.join(header)})")
    for n, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            raise LabFileError(
                f"{path}: data row {n} has {len(row)} cells, the header has {len(header)}"
            )
    body = [(row[sample_col], dict(zip(keys, row)), row) for row in rows[1:]]
    if "analyte" in keys and "value" in keys:
        return _long_csv(body, path)
    return _wide_csv(header, sample_col, body, path)


def _long_csv(body: list[_Row], path: Path) -> Iterator[LabPanel]:
    samples: dict[str, dict[str, Any]] = {}
    for n, (sample, cells, _) in enumerate(body, 2):
        if not sample:
            raise LabFileError(f"{path}: data row {n} has no sample name")
        analyte, unit = cells["analyte"], cells.get("unit", "")
        entries = samples.setdefault(sample, {})
        if analyte in entries:
            raise LabValueError(f"{path}: sample {sample!r}, {analyte}: given twice (data row {n})")
        entries[analyte] = {"value": cells["value"], "unit": unit} if unit else cells["value"]
    for sample, entries in samples.items():
        yield parse_panel(sample, entries, str(path))


def _wide_csv(
    header: list[str], sample_col: int, body: list[_Row], path: Path
) -> Iterator[LabPanel]:
    columns: list[tuple[int, str, str]] = []
    for i, name in enumerate(header):
        if i != sample_col:
            m = _HEADER_UNIT.match(name)
            columns.append((i, m.group(1), m.group(2)) if m else (i, name, ""))
    seen: set[str] = set()
    for n, (sample, _, row) in enumerate(body, 2):
        if not sample:
            raise LabFileError(f"{path}: data row {n} has no sample name")
        if sample in seen:
            raise LabFileError(f"{path}: sample {sample!r} has two rows (data row {n})")
        seen.add(sample)
        entries = {name: {"value": row[i], "unit": u} if u else row[i] for i, name, u in columns}
        yield parse_panel(sample, entries, str(path))


_READERS: dict[str, Callable[[str, Path], Iterator[LabPanel]]] = {
    ".json": _read_json,
    ".yaml": _read_yaml,
    ".yml": _read_yaml,
    ".csv": _read_csv,
}
