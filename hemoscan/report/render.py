"""Render reports: self-contained HTML (inline CSS, images as data URIs), PDF, index and CSV."""

from __future__ import annotations

import base64
import csv
import io
from pathlib import Path

from hemoscan.io.files import atomic_write_text, safe_stem
from hemoscan.io.spreadsheet import neutralise
from hemoscan.report.build import RESEARCH_USE, SampleReport


def format_number(value: object) -> str:
    """Numbers as a reader wants them: at most 4 significant digits below 1000, no float noise
    (38.611111 -> 38.61, 123.998 -> 124, 0.0451 -> 0.0451); other values unchanged."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    text = f"{value:.1f}" if abs(value) >= 1000 else f"{value:.4g}"
    return text.rstrip("0").rstrip(".") if "." in text and "e" not in text else text


def _environment():  # type: ignore[no-untyped-def]
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("hemoscan.report", "templates"),
        autoescape=True,  # sample names and lab text come from users
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = format_number
    return env


def _svg_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def render_html(report: SampleReport) -> str:
    plot_uris = {k: _svg_uri(v) for k, v in report.plots.items()}
    return _environment().get_template("report.html.j2").render(r=report, plot_uris=plot_uris)


def write_pdf(html: str, path: Path) -> None:
    """The same HTML as a PDF, laid out by WeasyPrint (no browser, no network)."""
    import logging

    from PIL import ImageFile

    previous = ImageFile.LOAD_TRUNCATED_IMAGES
    from weasyprint import HTML

    # WeasyPrint switches Pillow's global truncated-image tolerance on when imported; hemoscan
    # must keep refusing truncated tiles in the same process, and embeds only its own images.
    ImageFile.LOAD_TRUNCATED_IMAGES = previous
    logging.getLogger("fontTools").setLevel(logging.WARNING)
    path.parent.mkdir(parents=True, exist_ok=True)
    HTML(string=html).write_pdf(path)


def write_reports(reports: list[SampleReport], out: Path, pdf: Path | None = None) -> list[Path]:
    """Write one HTML (and PDF) per sample; with several samples ``out`` becomes an index page
    linking ``<out stem>-<sample>.html`` files beside it, plus ``<out stem>-samples.csv``."""
    out = Path(out)
    written: list[Path] = []
    if len(reports) == 1:
        html = render_html(reports[0])
        atomic_write_text(out, html)
        written.append(out)
        if pdf:
            write_pdf(html, pdf)
            written.append(pdf)
        return written
    rows = []
    for r in reports:
        name = f"{out.stem}-{safe_stem(r.sample)}"
        html = render_html(r)
        page = out.with_name(name + ".html")
        atomic_write_text(page, html)
        written.append(page)
        if pdf:
            target = pdf.with_name(f"{pdf.stem}-{safe_stem(r.sample)}.pdf")
            write_pdf(html, target)
            written.append(target)
        rows.append((r.summary_row(), page.name))
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
        .render(rows=rows, columns=columns, csv_name=csv_path.name, research_use=RESEARCH_USE)
    )
    atomic_write_text(out, index)
    return [out, csv_path, *written]
