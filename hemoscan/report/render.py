"""Render reports: self-contained HTML (inline CSS, images as data URIs), PDF, index and CSV."""

from __future__ import annotations

import base64
import csv
import io
import logging
import os
from pathlib import Path

import jinja2
from PIL import ImageFile

from hemoscan.io.files import atomic_write_bytes, atomic_write_text, unique_stem
from hemoscan.io.spreadsheet import neutralise
from hemoscan.qc import TILE_FLAG_TEXT
from hemoscan.report.build import RESEARCH_USE, SampleReport, rate_text

#: How the report names each QC flag in a table cell (the full sentence is on the sample page).
QC_FLAG_LABELS = {
    **{code: code.replace("_", " ") for code in TILE_FLAG_TEXT},
    "rbc_colour": "red-cell colour",
    "nucleus_colour": "nucleus colour",
    "too_few_cells": "too few cells",
    "failed_tiles": "failed tiles",
}


def format_number(value: object) -> str:
    """Numbers as a reader wants them: at most 4 significant digits below 1000, no float noise
    (38.611111 -> 38.61, 123.998 -> 124, 0.0451 -> 0.0451); other values unchanged."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    text = f"{value:.1f}" if abs(value) >= 1000 else f"{value:.4g}"
    return text.rstrip("0").rstrip(".") if "." in text and "e" not in text else text


def yes_no(value: object) -> str:
    """``yes`` / ``no`` for booleans, ``-`` for none, numbers via :func:`format_number`."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    return format_number(value)


def _environment():  # type: ignore[no-untyped-def]
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("hemoscan.report", "templates"),
        autoescape=True,  # sample names and lab text come from users
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = format_number
    env.filters["yesno"] = yes_no
    env.filters["flag_label"] = lambda code: QC_FLAG_LABELS.get(code, code.replace("_", " "))
    return env


def _svg_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def _href(target: Path | None, page: Path | None) -> str:
    """A link from ``page`` to ``target``: relative when both are known, else ``""``."""
    if target is None or page is None:
        return ""
    return Path(os.path.relpath(target, page.resolve().parent)).as_posix()


def render_html(report: SampleReport, page: Path | None = None) -> str:
    """The sample's page; ``page`` (where it will be written) makes links to tiles relative."""
    plot_uris = {k: _svg_uri(v) for k, v in report.plots.items()}
    return _environment().get_template("report.html.j2").render(
        r=report, plot_uris=plot_uris, rate=rate_text(report), href=lambda p: _href(p, page)
    )


def write_pdf(html: str, path: Path, base: Path | None = None) -> None:
    """The same HTML as a PDF, laid out by WeasyPrint (no browser, no network), written
    atomically; relative links resolve against the folder ``base``."""
    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    from weasyprint import HTML  # lazy: 0.4 s to import, needed for PDFs only

    # WeasyPrint switches Pillow's global truncated-image tolerance on when imported; hemoscan
    # must keep refusing truncated tiles in the same process, and embeds only its own images.
    ImageFile.LOAD_TRUNCATED_IMAGES = previous
    logging.getLogger("fontTools").setLevel(logging.WARNING)
    base_url = str(base.resolve()) + os.sep if base is not None else None
    atomic_write_bytes(path, HTML(string=html, base_url=base_url).write_pdf())


def sample_file_stems(samples: list[str]) -> list[str]:
    """One file stem per sample, never shared: :func:`~hemoscan.io.files.unique_stem`, and a
    further number if two still meet on a case-insensitive file system."""
    used: set[str] = set()
    stems = []
    for sample in samples:
        stem, n = unique_stem(sample), 1
        while stem.lower() in used:
            n += 1
            stem = f"{unique_stem(sample)}-{n}"
        used.add(stem.lower())
        stems.append(stem)
    return stems


def write_reports(reports: list[SampleReport], out: Path, pdf: Path | None = None) -> list[Path]:
    """Write one HTML (and PDF) per sample; with several samples ``out`` becomes an index page
    linking ``<out stem>-<sample>.html`` files beside it, plus ``<out stem>-samples.csv``.
    Sample names that differ only in characters a file name cannot hold get distinct files."""
    out = Path(out)
    written: list[Path] = []
    if len(reports) == 1:
        html = render_html(reports[0], out)
        atomic_write_text(out, html)
        written.append(out)
        if pdf:
            write_pdf(html, pdf, out.parent)
            written.append(pdf)
        return written
    rows, pages = [], []
    for r, stem in zip(reports, sample_file_stems([r.sample for r in reports]), strict=True):
        page = out.with_name(f"{out.stem}-{stem}.html")
        html = render_html(r, page)
        atomic_write_text(page, html)
        written.append(page)
        if pdf:
            target = pdf.with_name(f"{pdf.stem}-{stem}.pdf")
            write_pdf(html, target, page.parent)
            written.append(target)
        rows.append((r.summary_row(), page.name))
        pages.append((r, page.name, rate_text(r)))
    columns = list(rows[0][0]) if rows else ["sample"]
    csv_path = out.with_name(f"{out.stem}-samples.csv")
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns)
    writer.writeheader()
    writer.writerows(  # text cells spreadsheet-safe: a sample named "=HYPERLINK(..." stays text
        {k: neutralise(v) if isinstance(v, str) else v for k, v in row.items()} for row, _ in rows
    )
    atomic_write_text(csv_path, buf.getvalue())
    index = (
        _environment()
        .get_template("index.html.j2")
        .render(pages=pages, csv_name=csv_path.name, research_use=RESEARCH_USE)
    )
    atomic_write_text(out, index)
    return [out, csv_path, *written]
