"""Lab panels: reading JSON/YAML/CSV files, unit conversion and plausibility checks.

``read_lab_panels(path)`` returns one :class:`LabPanel` per sample; values are exact decimals in
canonical units (see :mod:`hemoscan.labs.units`) and keep what the lab reported.
"""

from hemoscan.labs.analytes import ANALYTES, Analyte, resolve_analyte
from hemoscan.labs.panel import LabPanel, LabValue, parse_panel
from hemoscan.labs.readers import read_lab_panels

__all__ = [
    "ANALYTES",
    "Analyte",
    "LabPanel",
    "LabValue",
    "parse_panel",
    "read_lab_panels",
    "resolve_analyte",
]
