"""Small dependency-free SVG charts (they render in browsers and in WeasyPrint alike)."""

from __future__ import annotations

from html import escape


def histogram_svg(
    values: list[float],
    bins: int = 10,
    lo: float = 0.0,
    hi: float = 1.0,
    title: str = "",
    xlabel: str = "",
) -> str:
    """A bar histogram of ``values`` over ``[lo, hi]`` in ``bins`` bins, as an SVG string."""
    counts = [0] * bins
    for v in values:
        i = min(bins - 1, max(0, int((v - lo) / (hi - lo) * bins)))
        counts[i] += 1
    labels = [f"{lo + (hi - lo) * i / bins:g}" for i in range(bins + 1)]
    return bar_chart_svg(
        counts, [labels[i] for i in range(bins)], title, xlabel, edge_label=labels[-1]
    )


def bar_chart_svg(
    counts: list[int],
    labels: list[str],
    title: str = "",
    xlabel: str = "",
    edge_label: str | None = None,
) -> str:
    """Vertical bars with a count axis; ``labels`` name the bars (thinned when many)."""
    width, height, left, bottom, top = 460, 200, 36, 34, 22
    plot_w, plot_h = width - left - 10, height - bottom - top
    peak = max(counts, default=0) or 1
    n = max(1, len(counts))
    bar_w = plot_w / n
    step = max(1, n // 12)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="10">',
        f'<text x="{left}" y="14" font-size="12" font-weight="bold">{escape(title)}</text>',
        f'<line x1="{left}" y1="{top + plot_h}" x2="{left + plot_w}" y2="{top + plot_h}" stroke="#444"/>',
        f'<line x1="{left}" y1="{top}" x2="{left}" y2="{top + plot_h}" stroke="#444"/>',
        f'<text x="{left - 4}" y="{top + 4}" text-anchor="end">{peak}</text>',
        f'<text x="{left - 4}" y="{top + plot_h}" text-anchor="end">0</text>',
    ]
    for i, c in enumerate(counts):
        h = plot_h * c / peak
        x = left + i * bar_w
        parts.append(
            f'<rect x="{x + 1:.1f}" y="{top + plot_h - h:.1f}" width="{max(bar_w - 2, 1):.1f}" '
            f'height="{h:.1f}" fill="#3a7bd5"><title>{escape(labels[i])}: {c}</title></rect>'
        )
        if i % step == 0:
            parts.append(f'<text x="{x:.1f}" y="{top + plot_h + 12}">{escape(labels[i])}</text>')
    if edge_label is not None:
        parts.append(
            f'<text x="{left + plot_w:.1f}" y="{top + plot_h + 12}" text-anchor="end">{escape(edge_label)}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2:.1f}" y="{height - 4}" text-anchor="middle">{escape(xlabel)}</text>'
    )
    parts.append("</svg>")
    return "".join(parts)
