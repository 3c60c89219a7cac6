"""Spreadsheet-safe CSV cells: formula triggers neutralised, and read back exactly."""

from __future__ import annotations

import pytest

from hemoscan.io.spreadsheet import neutralise, restore


@pytest.mark.parametrize(
    ("cell", "written"),
    [
        ('=HYPERLINK("http://evil","click")', '\'=HYPERLINK("http://evil","click")'),
        ("+1+1", "'+1+1"),
        ("-2+3", "'-2+3"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        ("'quoted", "''quoted"),
        ("patient_A", "patient_A"),
        ("scans/a=b.png", "scans/a=b.png"),
        ("", ""),
    ],
)
def test_triggers_are_neutralised_and_restored(cell: str, written: str) -> None:
    assert neutralise(cell) == written
    assert restore(written) == cell
    assert not neutralise(cell).startswith(("=", "+", "-", "@", "\t", "\r"))
