"""One synthetic smear tile with its ground truth (the absorbance renderer, placed cells).

Conventions: ``size`` is ``(width, height)`` like OpenCV and Pillow; images are ``(height,
width, 3)`` ``uint8`` RGB. Boxes are ``x1, y1, x2, y2`` float pixels, origin top-left, as in
:mod:`hemoscan.datamodel`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hemoscan.datamodel import CELL_CLASSES

from .absorbance import (
    NUCLEATED_KIND_NAMES,
    NUCLEATED_KIND_P,
    NUCLEATED_KINDS,
    Canvas,
    VisibleBox,
    draw_host,
    draw_nucleated,
    draw_platelet,
    draw_rbc,
    to_image,
)

#: Engulfed-cell types the generator draws inside hemophagocytes.
EXAMPLE_ENGULFED_TYPES: tuple[str, ...] = ("rbc", "nucleated", "platelet")

#: A box whose visible part (inside the tile) is below this fraction of the whole object is
#: dropped from the ground truth (the object is still drawn).
MIN_VISIBLE_FRACTION = 0.4

# placement kinds
_RBC, _PLT, _NUC, _HOST = 0, 1, 2, 3
# minimal centre distance factor (times r_i + r_j) between two non-host objects
_SPACING = np.array(
    [
        # rbc   plt   nuc
        [0.80, 0.90, 0.92],  # rbc
        [0.90, 1.20, 1.00],  # plt
        [0.92, 1.00, 0.95],  # nuc
    ],
    dtype=np.float64,
)


@dataclass(frozen=True)
class ExampleCell:
    """Ground truth of one generated object.

    ``label`` is one of :data:`hemoscan.datamodel.CELL_CLASSES`; ``engulfed`` is non-empty only
    for hemophagocytes and holds ``(type, x1, y1, x2, y2)`` per engulfed cell, ``type`` in
    ``("rbc", "nucleated", "platelet")``.
    """

    label: str
    x1: float
    y1: float
    x2: float
    y2: float
    engulfed: tuple[tuple[str, float, float, float, float], ...] = ()

    @property
    def box(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "label": self.label,
            "x1": round(self.x1, 2),
            "y1": round(self.y1, 2),
            "x2": round(self.x2, 2),
            "y2": round(self.y2, 2),
        }
        if self.label == "hemophagocyte":
            d["engulfed_cells"] = [
                {"label": t, **dict(zip(("x1", "y1", "x2", "y2"), (round(v, 2) for v in box)))}
                for t, *box in self.engulfed
            ]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExampleCell:
        engulfed = tuple(
            (str(e["label"]), float(e["x1"]), float(e["y1"]), float(e["x2"]), float(e["y2"]))
            for e in d.get("engulfed_cells", ())
        )
        return cls(
            label=str(d["label"]),
            x1=float(d["x1"]),
            y1=float(d["y1"]),
            x2=float(d["x2"]),
            y2=float(d["y2"]),
            engulfed=engulfed,
        )



class _Placer:
    """Rejection sampling of object centres with per-kind spacing rules."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng
        self.x: list[float] = []
        self.y: list[float] = []
        self.r: list[float] = []
        self.k: list[int] = []

    def place(
        self,
        kind: int,
        r: float,
        lo: tuple[float, float],
        hi: tuple[float, float],
        batches: int = 4,
    ) -> tuple[float, float] | None:
        if hi[0] < lo[0] or hi[1] < lo[1]:
            return None
        px = np.asarray(self.x)
        py = np.asarray(self.y)
        pr = np.asarray(self.r)
        pk = np.asarray(self.k, dtype=np.int64)
        if pk.size:
            host = (pk == _HOST) | (kind == _HOST)
            fac = np.where(host, 1.0, _SPACING[np.minimum(pk, 2), min(kind, 2)])
            need = np.where(host, pr + r + 3.0, fac * (pr + r))
        for _ in range(batches):
            cx = self.rng.uniform(lo[0], hi[0], 48)
            cy = self.rng.uniform(lo[1], hi[1], 48)
            if pk.size:
                dist = np.hypot(cx[:, None] - px[None, :], cy[:, None] - py[None, :])
                ok = np.all(dist >= need[None, :], axis=1)
                idx = np.flatnonzero(ok)
                if not idx.size:
                    continue
                i = int(idx[0])
            else:
                i = 0
            self.x.append(float(cx[i]))
            self.y.append(float(cy[i]))
            self.r.append(float(r))
            self.k.append(kind)
            return float(cx[i]), float(cy[i])
        return None



def render_example_tile(
    rng: np.random.Generator,
    size: tuple[int, int] = (512, 512),
    rbc_diameter_px: float = 40.0,
    n_rbc: int | None = None,
    hemophagocytes: int = 0,
    macrophages: int = 0,
) -> tuple[np.ndarray, list[ExampleCell]]:
    """Render one synthetic smear tile and its ground truth.

    ``size`` is ``(width, height)``; the image is ``(height, width, 3)`` ``uint8`` RGB.
    ``n_rbc`` is the number of red cells to try to place (default: 20-60 per 512x512 at 40 px,
    scaled by area and red-cell size); fewer may fit. Up to ``hemophagocytes`` hemophagocytes
    (each fully inside the tile, holding 1-4 engulfed cells) and ``macrophages`` macrophages are
    placed as far as they fit. Boxes of objects with less than 40% of their area inside the
    tile are left out of the ground truth. The result depends only on ``rng``'s state.
    """
    if isinstance(rng, (int, np.integer)):
        rng = np.random.default_rng(int(rng))
    width, height = int(size[0]), int(size[1])
    if width < 16 or height < 16:
        raise ValueError(f"tile size must be at least 16x16 pixels, got {width}x{height}")
    d = float(rbc_diameter_px)
    if not (4.0 <= d <= min(width, height)):
        raise ValueError(f"rbc_diameter_px must be between 4 and the tile's smaller side, got {d}")
    if hemophagocytes < 0 or macrophages < 0 or (n_rbc is not None and n_rbc < 0):
        raise ValueError("object counts must not be negative")

    canvas = Canvas(width, height)
    placer = _Placer(rng)
    cells: list[ExampleCell] = []
    density = (width * height) / (512.0 * 512.0) * (40.0 / d) ** 2

    def keep(label: str, box: VisibleBox | None, engulfed: tuple = ()) -> None:
        assert label in CELL_CLASSES
        if box is None or box[4] < MIN_VISIBLE_FRACTION:
            return
        if box[2] > box[0] and box[3] > box[1]:
            cells.append(ExampleCell(label, box[0], box[1], box[2], box[3], tuple(engulfed)))

    # macrophages and hemophagocytes first: everything else stays outside their bodies
    max_radius = (min(width, height) - 8) / 2 / 1.12
    for i in range(hemophagocytes + macrophages):
        is_hp = i < hemophagocytes
        diam_rbc = rng.uniform(3.0, 4.6) if is_hp else rng.uniform(2.5, 4.0)
        radius = min(d * diam_rbc / 2, max_radius)
        pos = None
        for _attempt in range(3):
            ext = radius * 1.12
            margin = ext + 3 if is_hp else radius * 0.55
            pos = placer.place(_HOST, ext, (margin, margin), (width - margin, height - margin))
            if pos is not None:
                break
            radius *= 0.85
        if pos is None:
            continue
        etypes: list[str] = []
        if is_hp:
            n_eng = int(rng.integers(1, 5))
            drawn = rng.choice(EXAMPLE_ENGULFED_TYPES, size=n_eng, p=(0.6, 0.3, 0.1))
            etypes = [str(t) for t in drawn]
            order = {"nucleated": 0, "rbc": 1, "platelet": 2}  # big ones first
            etypes.sort(key=order.__getitem__)
        host_box, inner = draw_host(canvas, rng, pos[0], pos[1], radius, d, etypes)
        if is_hp and inner:
            engulfed = tuple((t, b[0], b[1], b[2], b[3]) for t, b in inner)
            keep("hemophagocyte", host_box, engulfed)
        else:
            keep("macrophage", host_box)

    n_nuc = int(round(rng.integers(3, 13) * density))
    for _ in range(n_nuc):
        kind = str(rng.choice(NUCLEATED_KIND_NAMES, p=NUCLEATED_KIND_P))
        lo_f, hi_f = NUCLEATED_KINDS[kind][0]
        diam = d * rng.uniform(lo_f, hi_f)
        pos = placer.place(_NUC, diam / 2 * 1.07, (0.0, 0.0), (float(width), float(height)))
        if pos is not None:
            keep("nucleated", draw_nucleated(canvas, rng, pos[0], pos[1], diam, kind))

    if n_rbc is None:
        n_rbc = int(round(rng.integers(20, 61) * density))
    for _ in range(int(n_rbc)):
        diam = d * rng.uniform(0.85, 1.15)
        r = diam / 2
        # centres may lie a little outside: some red cells are cut by the border
        lo, hi = (-0.4 * r, -0.4 * r), (width + 0.4 * r, height + 0.4 * r)
        pos = placer.place(_RBC, r, lo, hi, batches=6)
        if pos is not None:
            keep("rbc", draw_rbc(canvas, rng, pos[0], pos[1], diam))

    n_plt = int(round(rng.integers(2, 7) * density))
    for _ in range(n_plt):
        diam = d * rng.uniform(0.25, 0.35)
        pos = placer.place(_PLT, diam / 2 * 1.3, (0.0, 0.0), (float(width), float(height)))
        if pos is not None:
            keep("platelet", draw_platelet(canvas, rng, pos[0], pos[1], diam))

    image = to_image(canvas, rng)
    return image, cells
