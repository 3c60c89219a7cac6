"""Drawing primitives shared by the procedural renderers of :mod:`hemoscan.synthetic`.

Two families, one per drawing model: *analytic shapes* (a wobbly ellipse's normalised radius
over a local pixel window, turned into an anti-aliased mask; :mod:`.absorbance` draws with
them) and *raster paint* (soft ellipses and alpha blending onto a float RGB image;
:mod:`.hosts` and the training composer draw with them). Both use :func:`smooth_noise`.

Conventions: arrays are ``(height, width[, channels])``; ``(x0, y0)`` is a window's or a
patch's top-left corner in the target's pixels, origin top-left, x to the right.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

Harmonics = list[tuple[int, float, float]]  # (order k, relative amplitude, phase)


# --------------------------------------------------------------------------- noise
def smooth_noise(
    rng: np.random.Generator,
    size: tuple[int, int],
    grid: tuple[int, ...],
    std: float = 1.0,
) -> np.ndarray:
    """Low-frequency noise: normal values (``std``) on a coarse ``grid`` (``(gh, gw)`` or
    ``(gh, gw, channels)``), resized bicubically to ``size = (height, width)``; float32."""
    small = rng.normal(0.0, std, grid).astype(np.float32)
    return cv2.resize(small, (size[1], size[0]), interpolation=cv2.INTER_CUBIC)


def blurred_noise(rng: np.random.Generator, shape: tuple[int, ...], sigma: float) -> np.ndarray:
    """Smooth zero-mean, unit-std noise."""
    n = rng.standard_normal(shape).astype(np.float32)
    n = cv2.GaussianBlur(n, (0, 0), sigma)
    return n / (float(n.std()) + 1e-6)



# --------------------------------------------------------------------------- analytic shapes
def local_window(cx: float, cy: float, extent: float) -> tuple[int, int, np.ndarray, np.ndarray]:
    """Local window around (cx, cy): top-left, and pixel-centre offsets dx (1, w), dy (h, 1)."""
    x0 = int(math.floor(cx - extent)) - 2
    y0 = int(math.floor(cy - extent)) - 2
    n = int(math.ceil(2 * extent)) + 5
    dx = (x0 + np.arange(n, dtype=np.float32) + 0.5 - cx)[None, :]
    dy = (y0 + np.arange(n, dtype=np.float32) + 0.5 - cy)[:, None]
    return x0, y0, dx, dy


Harmonics = list[tuple[int, float, float]]  # (order k, relative amplitude, phase)



def harmonics(rng: np.random.Generator, ks: tuple[int, ...], lo: float, hi: float) -> Harmonics:
    return [(k, float(rng.uniform(lo, hi)), float(rng.uniform(0, 2 * math.pi))) for k in ks]


def ellipse_radius(
    dx: np.ndarray,
    dy: np.ndarray,
    a: float,
    b: float,
    theta: float,
    harm: Harmonics | None = None,
) -> np.ndarray:
    """Normalised radius of an (optionally wobbly) ellipse: < 1 inside, 1 on the outline."""
    c, s = math.cos(theta), math.sin(theta)
    u = (dx * c + dy * s) / a
    v = (-dx * s + dy * c) / b
    r = np.sqrt(u * u + v * v)
    if harm:
        phi = np.arctan2(v, u)
        mod = np.ones_like(r)
        for k, amp, ph in harm:
            mod += amp * np.cos(k * phi + ph)
        r = r / mod
    return r


def ellipse_radius_at(
    px: np.ndarray, py: np.ndarray, a: float, b: float, theta: float, harm: Harmonics
) -> np.ndarray:
    return ellipse_radius(np.asarray(px, np.float64), np.asarray(py, np.float64), a, b, theta, harm)


def soft_edge(rho: np.ndarray, radius_px: float, edge_px: float = 1.2) -> np.ndarray:
    """Anti-aliased mask of ``rho < 1`` with an edge ramp about ``edge_px`` wide."""
    return np.clip(0.5 + (1.0 - rho) * (radius_px / edge_px), 0.0, 1.0).astype(np.float32)



def rotate(u: float, v: float, theta: float) -> tuple[float, float]:
    c, s = math.cos(theta), math.sin(theta)
    return u * c - v * s, u * s + v * c


# --------------------------------------------------------------------------- raster paint
def paste(canvas: np.ndarray, rgb: np.ndarray, alpha: np.ndarray, x0: int, y0: int) -> None:
    """Alpha-blend ``rgb`` (float HxWx3) onto float ``canvas`` at (x0, y0), clipped."""
    H, W = canvas.shape[:2]
    h, w = alpha.shape
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + h)
    if cx1 <= cx0 or cy1 <= cy0:
        return
    a = alpha[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0, None]
    src = rgb[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    canvas[cy0:cy1, cx0:cx1] = canvas[cy0:cy1, cx0:cx1] * (1 - a) + src * a


def soft_ellipse(h: int, w: int, blur: float, shrink: float = 0.0) -> np.ndarray:
    m = np.zeros((h, w), np.float32)
    axes = (max(1, int(w / 2 - shrink)), max(1, int(h / 2 - shrink)))
    cv2.ellipse(m, (w // 2, h // 2), axes, 0, 0, 360, 1.0, -1, cv2.LINE_AA)
    return cv2.GaussianBlur(m, (0, 0), blur) if blur > 0 else m
