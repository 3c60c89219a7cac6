"""The absorbance renderer: whole synthetic smear fields, drawn as optical density.

Every object adds optical density (Beer-Lambert) to a pale plasma background in a local window
(:class:`Canvas`), so overlapping red cells look darker where they overlap, as in a real
smear; :func:`to_image` turns the density into an RGB field with an uneven background, optics
blur and sensor noise. Shapes are wobbly ellipses (:mod:`.primitives`). The example tiles
(:mod:`hemoscan.examples`) are drawn with it. Boxes are ``x1, y1, x2, y2`` float pixels of the
field, origin top-left, plus the fraction of the object inside the field.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from .primitives import (
    blurred_noise,
    ellipse_radius,
    ellipse_radius_at,
    harmonics,
    local_window,
    rotate,
    smooth_noise,
    soft_edge,
)

BACKGROUND_RGB = np.array([235.0, 225.0, 225.0], dtype=np.float32)


def optical_density(rgb: tuple[float, float, float]) -> np.ndarray:
    """Optical density that turns the background colour into ``rgb``."""
    c = np.asarray(rgb, dtype=np.float32)
    return np.maximum(np.log(BACKGROUND_RGB / np.maximum(c, 1.0)), 0.0).astype(np.float32)


_OD_RBC = optical_density((215, 140, 150))
_OD_PLATELET = optical_density((150, 90, 170))
_OD_PLATELET_HALO = optical_density((205, 185, 215))
_OD_MACRO_CYTO = optical_density((196, 200, 222))
_OD_MACRO_NUCLEUS = optical_density((112, 78, 150))
_OD_MACRO_GRANULE = optical_density((150, 95, 160))

# kind: (diameter range in rbc diameters, cytoplasm rgb, nucleus rgb, nucleus shape)
_Rgb = tuple[int, int, int]
NUCLEATED_KINDS: dict[str, tuple[tuple[float, float], _Rgb, _Rgb, str]] = {
    "lymphocyte": ((1.0, 1.2), (160, 182, 218), (88, 52, 128), "round"),
    "erythroblast": ((1.0, 1.3), (178, 178, 208), (72, 40, 105), "round"),
    "granulocyte": ((1.2, 1.5), (222, 198, 208), (95, 55, 138), "lobed"),
    "monocyte": ((1.35, 1.6), (188, 190, 212), (112, 78, 152), "kidney"),
}
NUCLEATED_KIND_NAMES = tuple(NUCLEATED_KINDS)
NUCLEATED_KIND_P = np.array([0.25, 0.3, 0.3, 0.15])

VisibleBox = tuple[float, float, float, float, float]  # x1, y1, x2, y2, visible fraction


class Canvas:
    """An optical-density canvas; objects add density in local windows."""

    def __init__(self, width: int, height: int) -> None:
        self.w = width
        self.h = height
        self.od = np.zeros((height, width, 3), dtype=np.float32)

    def add(self, x0: int, y0: int, density: np.ndarray, od: np.ndarray) -> None:
        h, w = density.shape
        ix0, iy0 = max(x0, 0), max(y0, 0)
        ix1, iy1 = min(x0 + w, self.w), min(y0 + h, self.h)
        if ix0 >= ix1 or iy0 >= iy1:
            return
        sub = density[iy0 - y0 : iy1 - y0, ix0 - x0 : ix1 - x0]
        self.od[iy0:iy1, ix0:ix1] += sub[..., None] * od

    def box(self, mask: np.ndarray, x0: int, y0: int) -> VisibleBox | None:
        """Tight box of ``mask >= 0.5`` (a local window at x0, y0), clipped, + visible fraction."""
        binary = mask >= 0.5
        total = int(binary.sum())
        if total == 0:
            return None
        cols = np.flatnonzero(binary.any(axis=0))
        rows = np.flatnonzero(binary.any(axis=1))
        h, w = binary.shape
        vx0, vy0 = max(0, -x0), max(0, -y0)
        vx1, vy1 = min(w, self.w - x0), min(h, self.h - y0)
        visible = int(binary[vy0:vy1, vx0:vx1].sum()) if vx0 < vx1 and vy0 < vy1 else 0
        x1 = min(max(float(x0 + cols[0]), 0.0), float(self.w))
        x2 = min(max(float(x0 + cols[-1] + 1), 0.0), float(self.w))
        y1 = min(max(float(y0 + rows[0]), 0.0), float(self.h))
        y2 = min(max(float(y0 + rows[-1] + 1), 0.0), float(self.h))
        return (x1, y1, x2, y2, visible / total)



def draw_rbc(
    canvas: Canvas,
    rng: np.random.Generator,
    cx: float,
    cy: float,
    diam: float,
    engulfed: bool = False,
) -> VisibleBox | None:
    a = diam / 2
    b = a * rng.uniform(0.88, 1.0)
    theta = rng.uniform(0, math.pi)
    harm = harmonics(rng, (2, 3), 0.0, 0.02)
    x0, y0, dx, dy = local_window(cx, cy, a * 1.05)
    rho = ellipse_radius(dx, dy, a, b, theta, harm)
    body = soft_edge(rho, (a + b) / 2, 1.3)
    if engulfed:  # engulfed red cells look spherocytic: little pallor, denser
        depth, strength = rng.uniform(0.0, 0.15), rng.uniform(1.05, 1.25)
    else:
        depth, strength = rng.uniform(0.5, 0.72), rng.uniform(0.9, 1.08)
    pr = rng.uniform(0.42, 0.55)
    pallor = 1.0 - depth * np.exp(-((rho / pr) ** 2))
    rim = 1.0 + 0.15 * np.exp(-(((rho - 0.88) / 0.09) ** 2))
    dens = body * pallor * rim * strength
    od = _OD_RBC * rng.uniform(0.96, 1.04, 3).astype(np.float32)
    canvas.add(x0, y0, dens.astype(np.float32), od)
    return canvas.box(body, x0, y0)


def draw_platelet(
    canvas: Canvas, rng: np.random.Generator, cx: float, cy: float, diam: float
) -> VisibleBox | None:
    a = diam / 2
    b = a * rng.uniform(0.75, 1.0)
    theta = rng.uniform(0, math.pi)
    harm = harmonics(rng, (2, 3, 4), 0.02, 0.05)
    x0, y0, dx, dy = local_window(cx, cy, a * 1.45)
    rho = ellipse_radius(dx, dy, a, b, theta, harm)
    body = soft_edge(rho, (a + b) / 2, 1.0)
    halo = soft_edge(rho / 1.3, (a + b) / 2 * 1.3, 1.5) * (1.0 - body)
    gran = (rng.random(body.shape) < 0.3).astype(np.float32)
    gran = cv2.GaussianBlur(gran, (0, 0), 0.7)
    gran /= float(gran.max()) + 1e-6
    dens = body * np.clip(0.35 + 1.1 * gran, 0.0, 1.4)
    canvas.add(x0, y0, dens, _OD_PLATELET)
    canvas.add(x0, y0, halo * 0.6, _OD_PLATELET_HALO)
    return canvas.box(body, x0, y0)


def draw_nucleated(
    canvas: Canvas,
    rng: np.random.Generator,
    cx: float,
    cy: float,
    diam: float,
    kind: str,
    engulfed: bool = False,
) -> VisibleBox | None:
    _, cyto_rgb, nuc_rgb, shape = NUCLEATED_KINDS[kind]
    a = diam / 2
    b = a * rng.uniform(0.88, 1.0)
    theta = rng.uniform(0, math.pi)
    harm = harmonics(rng, (2, 3), 0.0, 0.03)
    x0, y0, dx, dy = local_window(cx, cy, a * 1.07)
    rho = ellipse_radius(dx, dy, a, b, theta, harm)
    body = soft_edge(rho, (a + b) / 2, 1.3)
    r = min(a, b)

    if shape == "round":
        frac = rng.uniform(0.72, 0.84) if kind == "lymphocyte" else rng.uniform(0.52, 0.66)
        if engulfed:
            frac = rng.uniform(0.6, 0.78)
        na = r * frac
        off = r * (1 - frac) * rng.uniform(0.0, 0.6)
        psi = rng.uniform(0, 2 * math.pi)
        ncx, ncy = off * math.cos(psi), off * math.sin(psi)
        nb = na * rng.uniform(0.85, 1.0)
        nuc = soft_edge(ellipse_radius(dx - ncx, dy - ncy, na, nb, rng.uniform(0, math.pi)), na, 1.0)
    elif shape == "lobed":
        n_lobes = int(rng.integers(2, 5))
        lr = r * rng.uniform(0.3, 0.37)
        arc_r = r * rng.uniform(0.35, 0.45)
        step = 1.5 * lr / arc_r  # angular spacing so that lobes overlap a little
        start = rng.uniform(0, 2 * math.pi)
        nuc = np.zeros_like(body)
        for i in range(n_lobes):
            ang = start + step * (i - (n_lobes - 1) / 2) + rng.normal(0, 0.08)
            lx, ly = arc_r * math.cos(ang), arc_r * math.sin(ang)
            rr = lr * rng.uniform(0.85, 1.1)
            rb = rr * rng.uniform(0.75, 1.0)
            lobe = soft_edge(ellipse_radius(dx - lx, dy - ly, rr, rb, rng.uniform(0, math.pi)), rr, 1.0)
            nuc = np.maximum(nuc, lobe)
    else:  # kidney
        na, nb = r * rng.uniform(0.6, 0.7), r * rng.uniform(0.42, 0.5)
        nth = rng.uniform(0, math.pi)
        ux, uy = rotate(0.0, 1.0, nth)  # minor-axis direction
        shift = rng.uniform(0.05, 0.15) * r
        ell = soft_edge(ellipse_radius(dx + ux * shift, dy + uy * shift, na, nb, nth), (na + nb) / 2, 1.0)
        nr = nb * rng.uniform(0.7, 0.9)
        d_notch = nb * 1.25 - shift
        notch = soft_edge(ellipse_radius(dx - ux * d_notch, dy - uy * d_notch, nr, nr, 0.0), nr, 1.0)
        nuc = ell * (1.0 - notch)
    nuc = nuc * body

    cyto_tex = blurred_noise(rng, body.shape, 1.2)
    cyto = body * (1.0 - nuc) * np.clip(0.9 + 0.1 * cyto_tex, 0.6, 1.2)
    if kind == "granulocyte":
        gran = cv2.GaussianBlur((rng.random(body.shape) < 0.12).astype(np.float32), (0, 0), 0.6)
        cyto = cyto * (0.85 + 1.2 * gran)
    chrom = blurred_noise(rng, body.shape, 1.0)
    nuc_strength = 1.15 if engulfed else 1.0
    nuc_dens = nuc * np.clip(0.88 + 0.16 * chrom, 0.6, 1.3) * nuc_strength
    jitter = rng.uniform(0.95, 1.05, 3).astype(np.float32)
    canvas.add(x0, y0, cyto.astype(np.float32), optical_density(cyto_rgb) * jitter)
    canvas.add(x0, y0, nuc_dens.astype(np.float32), optical_density(nuc_rgb) * jitter)
    return canvas.box(body, x0, y0)


def draw_host(
    canvas: Canvas,
    rng: np.random.Generator,
    cx: float,
    cy: float,
    radius: float,
    d: float,
    engulfed_types: list[str],
) -> tuple[VisibleBox | None, list[tuple[str, VisibleBox]]]:
    """A macrophage (no ``engulfed_types``) or a hemophagocyte holding those cells."""
    a = radius
    b = radius * rng.uniform(0.72, 0.92)
    theta = rng.uniform(0, math.pi)
    harm = harmonics(rng, (2, 3, 5), 0.01, 0.04)
    x0, y0, dx, dy = local_window(cx, cy, a * 1.12)
    rho = ellipse_radius(dx, dy, a, b, theta, harm)
    body = soft_edge(rho, (a + b) / 2, 1.6)
    h, w = body.shape
    lcx, lcy = cx - x0 - 0.5, cy - y0 - 0.5  # host centre in window pixel indices

    # large oval eccentric nucleus (body frame -> window)
    psi = rng.uniform(0, 2 * math.pi)
    s = rng.uniform(0.3, 0.45)
    nu, nv = rotate(s * a * math.cos(psi), s * b * math.sin(psi), theta)
    n_a = b * rng.uniform(0.3, 0.4)
    n_b = n_a * rng.uniform(0.65, 0.85)
    n_th = rng.uniform(0, math.pi)
    n_harm = harmonics(rng, (2, 3), 0.0, 0.04)
    nuc = soft_edge(ellipse_radius(dx - nu, dy - nv, n_a, n_b, n_th, n_harm), (n_a + n_b) / 2, 1.2)

    # engulfed cells: positions inside the cytoplasm, away from the nucleus and each other
    placed: list[tuple[str, float, float, float, float, str]] = []  # type, x, y, r, halo, kind
    scale = d / 40.0
    for etype in engulfed_types:
        if etype == "rbc":
            diam, kind = d * rng.uniform(0.72, 0.92), ""
        elif etype == "nucleated":
            choices = ("erythroblast", "lymphocyte", "granulocyte")
            kind = str(rng.choice(choices, p=(0.45, 0.35, 0.2)))
            diam = d * rng.uniform(0.8, 1.05)
        else:
            diam, kind = d * rng.uniform(0.25, 0.35), ""
        halo = rng.uniform(1.5, 3.5) * scale
        for _attempt in range(4):
            er = diam / 2 * 1.08
            margin = er + halo + 2.0
            ang = rng.uniform(0, 2 * math.pi, 96)
            rad = np.sqrt(rng.uniform(0, 1, 96))
            pu, pv = a * rad * np.cos(ang), b * rad * np.sin(ang)
            c, sn = math.cos(theta), math.sin(theta)
            px, py = pu * c - pv * sn, pu * sn + pv * c
            dist = np.hypot(px, py)
            rr = np.maximum(ellipse_radius_at(px, py, a, b, theta, harm), 1e-6)
            ok = (dist / rr - dist) * 0.85 >= margin
            ok &= np.hypot(px - nu, py - nv) >= max(n_a, n_b) + margin
            for _, qx, qy, qr, qh, _ in placed:
                ok &= np.hypot(px - qx, py - qy) >= qr + qh + margin - 1.0
            idx = np.flatnonzero(ok)
            if idx.size:
                i = int(idx[0])
                placed.append((etype, float(px[i]), float(py[i]), diam / 2, halo, kind))
                break
            diam *= 0.85

    # cytoplasm: pale, foamy, with small vacuoles, a few granules and clear phagocytic vacuoles
    tex = blurred_noise(rng, body.shape, 2.0 * scale)
    cyto = body * np.clip(0.82 + 0.12 * tex, 0.5, 1.2)
    vac = np.zeros((h, w), dtype=np.uint8)
    area_factor = (a * b) / (60.0 * 50.0)
    for _ in range(int(rng.integers(12, 30) * area_factor)):
        ang, rad = rng.uniform(0, 2 * math.pi), math.sqrt(rng.uniform(0, 0.8))
        vu, vv = rotate(a * rad * math.cos(ang), b * rad * math.sin(ang), theta)
        vr = d * rng.uniform(0.04, 0.11)
        centre = (int((lcx + vu) * 4), int((lcy + vv) * 4))  # 2 fractional bits
        cv2.circle(vac, centre, int(vr * 4), 255, -1, cv2.LINE_AA, 2)
    vac_f = cv2.GaussianBlur(vac.astype(np.float32) / 255.0, (0, 0), 0.8)
    cyto *= 1.0 - 0.7 * vac_f
    gran = np.zeros((h, w), dtype=np.uint8)
    for _ in range(int(rng.integers(5, 20) * area_factor)):
        ang, rad = rng.uniform(0, 2 * math.pi), math.sqrt(rng.uniform(0, 0.85))
        gu, gv = rotate(a * rad * math.cos(ang), b * rad * math.sin(ang), theta)
        gr = rng.uniform(0.8, 1.6) * scale
        centre = (int((lcx + gu) * 4), int((lcy + gv) * 4))
        cv2.circle(gran, centre, max(int(gr * 4), 2), 255, -1, cv2.LINE_AA, 2)
    gran_f = cv2.GaussianBlur(gran.astype(np.float32) / 255.0, (0, 0), 0.6) * body
    for _, ex, ey, er, eh, _ in placed:
        clear = soft_edge(np.hypot(dx - ex, dy - ey) / (er + eh), er + eh, 1.2)
        cyto *= 1.0 - 0.88 * clear
        gran_f *= 1.0 - clear
    gran_f *= 1.0 - nuc
    cyto *= 1.0 - nuc
    chrom = blurred_noise(rng, body.shape, 1.3 * scale)
    nuc_dens = nuc * np.clip(0.85 + 0.2 * chrom, 0.5, 1.3)
    jitter = rng.uniform(0.95, 1.05, 3).astype(np.float32)
    canvas.add(x0, y0, cyto.astype(np.float32), _OD_MACRO_CYTO * jitter)
    canvas.add(x0, y0, (gran_f * 0.6).astype(np.float32), _OD_MACRO_GRANULE)
    canvas.add(x0, y0, nuc_dens.astype(np.float32), _OD_MACRO_NUCLEUS * jitter)
    host_box = canvas.box(body, x0, y0)

    inner: list[tuple[str, VisibleBox]] = []
    for etype, ex, ey, er, _, kind in placed:
        gx, gy = cx + ex, cy + ey
        if etype == "rbc":
            box = draw_rbc(canvas, rng, gx, gy, 2 * er, engulfed=True)
        elif etype == "nucleated":
            box = draw_nucleated(canvas, rng, gx, gy, 2 * er, kind, engulfed=True)
        else:
            box = draw_platelet(canvas, rng, gx, gy, 2 * er)
        if box is not None and box[4] > 0:
            inner.append((etype, box))
    return host_box, inner



def to_image(canvas: Canvas, rng: np.random.Generator) -> np.ndarray:
    """Background field (slightly uneven plasma) x transmittance, optics blur and sensor noise."""
    h, w = canvas.h, canvas.w
    bg = BACKGROUND_RGB + rng.uniform(-4, 4, 3).astype(np.float32)
    lum = smooth_noise(rng, (h, w), (4, 4), 0.022)
    tint = smooth_noise(rng, (h, w), (3, 3, 3), 0.008)
    field = bg[None, None, :] * (1.0 + lum[..., None] + tint)
    stain = rng.uniform(0.9, 1.1)  # overall stain intensity of this "slide"
    canvas.od *= np.float32(-stain)
    img = field * np.exp(canvas.od)
    img = cv2.GaussianBlur(img, (0, 0), 0.7)
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(1.8)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)
