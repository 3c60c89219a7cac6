"""Spreadsheet-safe CSV cells: text a user or the file system supplied never runs as a formula.

A cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read as a
formula by Excel, LibreOffice and Google Sheets (CSV injection, OWASP). :func:`neutralise`
prefixes such a cell, and a cell that already starts with a single quote, with one ``'``; a
spreadsheet shows the quote-prefixed text as plain text. :func:`restore` undoes it exactly, so
``restore(neutralise(s)) == s`` for every string and hemoscan reads back what it wrote.

Applied to the text columns of ``tiles.csv`` (``sample``, ``tile``, ``error``) and to the text
cells of ``report-samples.csv``; numbers hemoscan computes are written as they are.
"""

from __future__ import annotations

#: First characters that make a spreadsheet evaluate a cell, plus the quote that escapes them.
_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "'")


def neutralise(cell: str) -> str:
    """``cell`` with a leading ``'`` when it starts with a formula trigger or a quote."""
    return "'" + cell if cell.startswith(_TRIGGERS) else cell


def restore(cell: str) -> str:
    """The text :func:`neutralise` was given."""
    return cell[1:] if cell.startswith("'") else cell
