"""Per-epoch results of a run: ``results.csv`` and its curves, ``curves.png`` (drawn with Pillow).

One row per finished epoch: ``epoch, step`` (optimizer steps so far), mean training losses
(``loss, heatmap, size, offset, distill``: the total, the ground-truth terms and the
teacher term, 0 without one), ``lr`` (after the epoch), ``images_per_s`` (training only),
``wall_s`` (training and validation time so far, summed over resumes), ``ap50_<class>`` for the
evaluated classes, ``metric`` (the model-selection score), ``best`` (best metric so far) and
``skipped_steps`` (non-finite losses or gradients). Missing values are ``nan``.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

RESULTS_FILE = "results.csv"
CURVES_FILE = "curves.png"
LOSS_KEYS = ("loss", "heatmap", "size", "offset", "distill")


def results_fields(eval_classes: Sequence[str]) -> list[str]:
    return ["epoch", "step", *LOSS_KEYS, "lr", "images_per_s", "wall_s",
            *(f"ap50_{c}" for c in eval_classes), "metric", "best", "skipped_steps"]  # fmt: skip


def fmt(value: float, spec: str) -> str:
    return "nan" if value is None or not math.isfinite(value) else format(value, spec)


class ResultsLog:
    """``results.csv`` in a run folder: rows appended as epochs finish."""

    def __init__(self, folder: Path, fields: Sequence[str]) -> None:
        self.path = folder / RESULTS_FILE
        self.fields = list(fields)

    def rows(self) -> list[dict[str, str]]:
        if not self.path.exists():
            return []
        with open(self.path, newline="") as f:
            return list(csv.DictReader(f))

    def start(self, first_epoch: int) -> None:
        """Keep the rows of epochs before ``first_epoch`` (a resumed run redoes the rest),
        rewritten under this log's header (older files may have fewer columns)."""
        kept = [
            r for r in self.rows() if r.get("epoch", "").isdigit() and int(r["epoch"]) < first_epoch
        ]
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, self.fields, restval="nan", extrasaction="ignore")
            w.writeheader()
            w.writerows(kept)
        tmp.replace(self.path)

    def append(self, row: dict[str, str]) -> None:
        with open(self.path, "a", newline="") as f:
            csv.DictWriter(f, self.fields, restval="nan").writerow(row)


# --------------------------------------------------------------------------- curves
_COLOURS = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
            (140, 86, 75), (227, 119, 194), (127, 127, 127)]  # fmt: skip


def _number(text: str | None) -> float:
    try:
        return float(text) if text not in (None, "") else math.nan
    except ValueError:
        return math.nan


def _panel(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    title: str,
    x: list[float],
    series: dict[str, list[float]],
    font: ImageFont.ImageFont,
    y_range: tuple[float, float] | None = None,
) -> None:
    left, top, right, bottom = box
    px0, py0, px1, py1 = left + 46, top + 30, right - 8, bottom - 22
    draw.text((left + 4, top + 4), title, fill=(0, 0, 0), font=font)
    draw.rectangle((px0, py0, px1, py1), outline=(0, 0, 0))
    values = [v for ys in series.values() for v in ys if math.isfinite(v)]
    if not x or not values:
        draw.text((px0 + 8, py0 + 8), "no data", fill=(120, 120, 120), font=font)
        return
    lo, hi = y_range if y_range else (min(values), max(values))
    if hi - lo < 1e-12:
        lo, hi = lo - 0.5, hi + 0.5
    x0, x1 = min(x), max(x)
    span = max(x1 - x0, 1e-12)

    def at(xv: float, yv: float) -> tuple[float, float]:
        fx = 0.5 if x1 == x0 else (xv - x0) / span
        return px0 + fx * (px1 - px0), py1 - (yv - lo) / (hi - lo) * (py1 - py0)

    for yv in (lo, (lo + hi) / 2, hi):
        _, y = at(x0, yv)
        draw.line((px0 - 3, y, px0, y), fill=(0, 0, 0))
        draw.text((left + 2, y - 6), f"{yv:.3g}", fill=(0, 0, 0), font=font)
    for xv in sorted({x0, x1}):
        xx, _ = at(xv, lo)
        draw.text((xx - 4, py1 + 4), f"{xv:g}", fill=(0, 0, 0), font=font)
    for k, (name, ys) in enumerate(series.items()):
        colour = _COLOURS[k % len(_COLOURS)]
        pts = [at(a, b) for a, b in zip(x, ys) if math.isfinite(b)]
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        for px, py in pts:
            draw.ellipse((px - 2, py - 2, px + 2, py + 2), fill=colour)
        draw.text((px0 + 6, py0 + 4 + 12 * k), name, fill=colour, font=font)


def plot_curves(rows: Sequence[dict[str, str]], path: Path, eval_classes: Sequence[str]) -> Path:
    """Draw losses, learning rate and validation AP50 against the epoch into ``path`` (PNG)."""
    width, height = 1200, 360
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    x = [_number(r.get("epoch")) for r in rows]
    col = lambda key: [_number(r.get(key)) for r in rows]
    third = width // 3
    _panel(draw, (0, 0, third, height), "training loss (mean per epoch)", x,
           {k: col(k) for k in LOSS_KEYS}, font)  # fmt: skip
    _panel(
        draw,
        (third, 0, 2 * third, height),
        "learning rate (end of epoch)",
        x,
        {"lr": col("lr")},
        font,
    )
    metrics = {f"AP50 {c}": col(f"ap50_{c}") for c in eval_classes}
    metrics["selection metric"] = col("metric")
    _panel(draw, (2 * third, 0, width, height), "validation", x, metrics, font, (0.0, 1.0))
    draw.text((8, height - 14), "epoch", fill=(90, 90, 90), font=font)
    tmp = path.with_name(path.name + ".tmp")
    img.save(tmp, format="PNG")
    tmp.replace(path)
    return path
