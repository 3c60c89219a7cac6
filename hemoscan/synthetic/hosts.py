"""Painted hosts: procedural macrophages drawn onto real fields (the training composer's).

A :class:`Host` is a float RGB patch with a soft alpha, painted in RGB (not absorbance: it is
alpha-blended onto a real field, :func:`hemoscan.synthetic.primitives.paste`): an irregular
(or lobed) silhouette, pale foamy cytoplasm or cytoplasm quilted from a real host's texture,
and a large eccentric nucleus. Inclusions (dark dots, empty vacuoles, parasite-like bodies)
are painted straight onto the field. Colours are float RGB 0-255; ``bg`` and ``dark`` are the
field's background and darkest stain colours (:func:`field_colours`).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .primitives import smooth_noise


def _noise(rng: np.random.Generator, side: int, cell: int) -> np.ndarray:
    """:func:`smooth_noise` over a ``side`` square on a grid of about ``cell`` pixels."""
    return smooth_noise(rng, (side, side), (max(2, side // cell),) * 2)


@dataclass
class Host:
    rgb: np.ndarray  # float32 [S, S, 3]
    alpha: np.ndarray  # float32 [S, S], soft edges
    mask: np.ndarray  # bool [S, S], the silhouette
    nucleus: np.ndarray  # bool [S, S]


def field_colours(img: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The field's background (bright mode) and darkest stain colours, float RGB."""
    px = img[::4, ::4].reshape(-1, 3).astype(np.float32)
    gray = px.mean(1)
    bg = np.median(px[gray >= np.percentile(gray, 70)], 0)
    dark = np.median(px[gray <= np.percentile(gray, 3)], 0)
    return bg, dark


def outline(rng: np.random.Generator, cx: float, cy: float, rx: float, ry: float) -> np.ndarray:
    """An irregular oval polygon around (cx, cy) with semi-axes about (rx, ry), int32 [N, 2]."""
    n = int(rng.integers(10, 20))
    ang = np.sort(rng.uniform(0, 2 * np.pi, n))
    jitter = np.convolve(np.tile(rng.normal(0, 0.09, n), 3), np.ones(3) / 3, "same")[n : 2 * n]
    rot = rng.uniform(0, np.pi)
    px, py = rx * np.cos(ang) * (1 + jitter), ry * np.sin(ang) * (1 + jitter)
    pts = np.stack(
        [cx + px * np.cos(rot) - py * np.sin(rot), cy + px * np.sin(rot) + py * np.cos(rot)], 1
    )
    return np.round(pts).astype(np.int32)


def silhouette(
    rng: np.random.Generator, diameter: float, S: int, lobes: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """A host outline in an ``S`` square: (bool mask, float32 soft alpha). One irregular oval
    of ``diameter``, or ``lobes`` overlapping smaller ovals along an axis (a ragged host)."""
    c = S / 2
    if lobes == 1:
        rx, ry = diameter / 2, diameter / 2 * rng.uniform(0.65, 1.0)
        polys = [outline(rng, c, c, rx, ry)]
    else:
        axis = rng.uniform(0, np.pi)
        polys = []
        for t in np.linspace(-1, 1, lobes) * diameter * rng.uniform(0.15, 0.25):
            r = diameter * rng.uniform(0.25, 0.33)
            polys.append(
                outline(rng, c + t * np.cos(axis), c + t * np.sin(axis), r, r * rng.uniform(0.65, 1.0))
            )
    m = np.zeros((S, S), np.float32)
    for pts in polys:
        cv2.fillPoly(m, [pts], 1.0, cv2.LINE_AA)
    mask = cv2.GaussianBlur(m, (0, 0), diameter * 0.06) > 0.5
    alpha = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), rng.uniform(1.0, 2.5))
    return mask, alpha


def paint_nucleus(
    rng: np.random.Generator, rgb: np.ndarray, mask: np.ndarray, diameter: float, dark: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """A large eccentric oval nucleus kept inside ``mask``: (float rgb, bool nucleus)."""
    S = mask.shape[0]
    c = S / 2
    a_ax, b_ax = diameter * rng.uniform(0.17, 0.27), diameter * rng.uniform(0.12, 0.2)
    d_ang, ecc = rng.uniform(0, 2 * np.pi), rng.uniform(0.12, 0.28) * diameter
    ncx, ncy = c + ecc * np.cos(d_ang), c + ecc * np.sin(d_ang)
    nm = np.zeros((S, S), np.float32)
    cv2.ellipse(nm, (int(ncx), int(ncy)), (int(a_ax), int(b_ax)), float(rng.uniform(0, 180)),
                0, 360, 1.0, -1, cv2.LINE_AA)  # fmt: skip
    nm *= cv2.erode(mask.astype(np.float32), np.ones((7, 7), np.uint8))
    n_col = dark * 0.5 + np.array([115, 65, 150], np.float32) * 0.5
    n_rgb = n_col + _noise(rng, S, 3)[..., None] * rng.uniform(8, 18)
    na = cv2.GaussianBlur(nm, (0, 0), 1.2) * rng.uniform(0.85, 1.0)
    return rgb * (1 - na[..., None]) + n_rgb * na[..., None], nm > 0.5


def procedural_host(
    rng: np.random.Generator, diameter: float, bg: np.ndarray, dark: np.ndarray, lobes: int = 1
) -> Host:
    """Irregular oval (or ``lobes`` lobes), pale foamy cytoplasm with vacuoles, large eccentric
    oval nucleus."""
    S = int(diameter * 1.25) + 12
    mask, alpha = silhouette(rng, diameter, S, lobes)
    base = np.array(
        [(170, 180, 210), (195, 175, 212), (185, 185, 200)][rng.integers(3)], np.float32
    )
    cyto = (bg * (1 - (t := rng.uniform(0.35, 0.7))) + base * t) * rng.uniform(0.82, 0.96)
    rgb = np.broadcast_to(cyto, (S, S, 3)).copy()
    rgb += _noise(rng, S, max(4, int(diameter / 10)))[..., None] * rng.uniform(5, 12)
    rgb += rng.normal(0, rng.uniform(2, 5), (S, S, 1)).astype(np.float32)
    ys, xs = np.nonzero(cv2.erode(mask.astype(np.uint8), np.ones((5, 5), np.uint8)))
    for _ in range(int(rng.integers(4, 25))):  # foamy vacuoles
        if not len(xs):
            break
        k = rng.integers(len(xs))
        r = rng.uniform(1.5, max(2.0, diameter * 0.045))
        cv2.circle(
            rgb,
            (int(xs[k]), int(ys[k])),
            int(round(r)),
            tuple(float(v) for v in np.minimum(bg + 12, 255)),
            -1,
            cv2.LINE_AA,
        )
    rgb, nucleus = paint_nucleus(rng, rgb, mask, diameter, dark)
    return Host(np.clip(rgb, 0, 255), alpha, mask, nucleus)


def stain_jitter(rng: np.random.Generator, rgb: np.ndarray, hue: float) -> np.ndarray:
    """``rgb`` (float, 0-255) with its hue shifted by ``-hue / 3 .. hue`` (OpenCV units: +20
    turns Giemsa blue-violet to magenta, the way Romanowsky stains vary, while a large negative
    shift would turn it an unreal cyan), saturation x0.75-1.3 and value x0.85-1.1."""
    hsv = cv2.cvtColor(np.clip(rgb, 0, 255).astype(np.uint8), cv2.COLOR_RGB2HSV).astype(np.float32)
    hsv[..., 0] = (hsv[..., 0] + rng.uniform(-hue / 3, hue)) % 180
    hsv[..., 1] *= rng.uniform(0.75, 1.3)
    hsv[..., 2] *= rng.uniform(0.85, 1.1)
    hsv = np.clip(hsv, 0, [179, 255, 255]).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).astype(np.float32)


def texture_host(
    rng: np.random.Generator,
    diameter: float,
    source: tuple[np.ndarray, np.ndarray],
    dark: np.ndarray,
    lobes: int = 1,
    hue: float = 0.0,
) -> Host | None:
    """A synthetic host whose cytoplasm is quilted from a real host's (``source``: rgb, mask),
    inclusions and all, on a new silhouette, with a painted nucleus; ``None`` when the source
    has no patch of clear cytoplasm at this scale."""
    S = int(diameter * 1.25) + 12
    mask, alpha = silhouette(rng, diameter, S, lobes)
    img, m = source
    ys, xs = np.nonzero(m)
    s = diameter * rng.uniform(0.8, 1.3) / (max(np.ptp(ys), np.ptp(xs)) + 1)
    size = (max(2, round(img.shape[1] * s)), max(2, round(img.shape[0] * s)))
    img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    m = cv2.resize(m, size, interpolation=cv2.INTER_NEAREST) > 0
    gray = img.mean(2)
    dark_core = (m & (gray < np.percentile(gray[m], 30))).astype(np.uint8)
    nucleus = cv2.dilate(dark_core, np.ones((5, 5), np.uint8))
    patch = max(8, int(diameter * rng.uniform(0.2, 0.35)))
    valid = cv2.erode((m & (nucleus == 0)).astype(np.uint8), np.ones((patch, patch), np.uint8),
                      borderType=cv2.BORDER_CONSTANT, borderValue=0)
    cy, cx = np.nonzero(valid)
    if not len(cx):
        return None
    acc = np.zeros((S + patch, S + patch, 3), np.float32)
    weight = np.full((S + patch, S + patch, 1), 1e-6, np.float32)
    window = np.outer(np.hanning(patch + 2)[1:-1], np.hanning(patch + 2)[1:-1])[..., None]
    half = patch // 2
    for y in range(0, S, max(1, patch * 2 // 3)):
        for x in range(0, S, max(1, patch * 2 // 3)):
            k = rng.integers(len(cx))
            p = img[cy[k] - half : cy[k] - half + patch, cx[k] - half : cx[k] - half + patch]
            p = np.rot90(p, int(rng.integers(4)))
            if rng.random() < 0.5:
                p = p[:, ::-1]
            acc[y : y + patch, x : x + patch] += p * window
            weight[y : y + patch, x : x + patch] += window
    rgb = (acc / weight)[half : half + S, half : half + S]
    if hue:
        rgb = stain_jitter(rng, rgb, hue)
    rgb, nuc = paint_nucleus(rng, rgb, mask, diameter, dark)
    return Host(np.clip(rgb, 0, 255), alpha, mask, nuc)


def cytoplasm_points(host: Host) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) of the host's cytoplasm away from its edge and nucleus, host pixels."""
    inner = cv2.erode(host.mask.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    return np.nonzero(inner & ~host.nucleus)


def draw_dots(rng: np.random.Generator, canvas: np.ndarray, xs: np.ndarray, ys: np.ndarray,
          rbc_d: float, dark: np.ndarray) -> None:  # fmt: skip
    """6-29 small dark dots clustered around one of the points (xs, ys)."""
    col = tuple(float(v) for v in dark * 0.6 + np.array([90, 40, 120]) * 0.4)
    k = rng.integers(len(xs))
    for _ in range(int(rng.integers(6, 30))):
        px = int(xs[k] + rng.normal(0, rbc_d * 0.6))
        py = int(ys[k] + rng.normal(0, rbc_d * 0.6))
        radius = max(1, int(round(rng.uniform(1.0, 2.2) * rbc_d / 40)))
        cv2.circle(canvas, (px, py), radius, col, -1, cv2.LINE_AA)


def draw_vacuoles(rng: np.random.Generator, canvas: np.ndarray, xs: np.ndarray, ys: np.ndarray,
              rbc_d: float, bg: np.ndarray) -> None:  # fmt: skip
    """2-5 empty clear vacuoles centred on points (xs, ys)."""
    col = tuple(float(v) for v in np.clip(bg * 0.3 + np.array([250, 238, 242]) * 0.7, 0, 255))
    for _ in range(int(rng.integers(2, 6))):
        k = rng.integers(len(xs))
        radius = max(2, int(rbc_d * rng.uniform(0.1, 0.25)))
        cv2.circle(canvas, (int(xs[k]), int(ys[k])), radius, col, -1, cv2.LINE_AA)


def draw_parasites(rng: np.random.Generator, canvas: np.ndarray, xs: np.ndarray, ys: np.ndarray,
               rbc_d: float, dark: np.ndarray) -> None:  # fmt: skip
    """3-20 oval bodies the size of amastigotes (2-4 µm, a fifth to a third of a red cell),
    pale violet with a dark nucleus, clustered around one of the points (xs, ys)."""
    body = dark * 0.3 + np.array([165, 120, 200], np.float32) * 0.7
    core = dark * 0.7 + np.array([90, 30, 110], np.float32) * 0.3
    k = rng.integers(len(xs))
    spread = rbc_d * rng.uniform(0.4, 1.0)
    for _ in range(int(rng.integers(3, 21))):
        px, py = xs[k] + rng.normal(0, spread), ys[k] + rng.normal(0, spread)
        a = rbc_d * rng.uniform(0.1, 0.17)
        b = a * rng.uniform(0.55, 0.9)
        angle = float(rng.uniform(0, 180))
        jitter = rng.normal(0, 8, 3)
        cv2.ellipse(canvas, (int(px), int(py)), (max(1, int(a)), max(1, int(b))), angle, 0, 360,
                    tuple(float(v) for v in np.clip(body + jitter, 0, 255)), -1, cv2.LINE_AA)  # fmt: skip
        nx, ny = px + rng.normal(0, a * 0.25), py + rng.normal(0, a * 0.25)
        cv2.circle(canvas, (int(nx), int(ny)), max(1, int(a * 0.4)),
                   tuple(float(v) for v in core), -1, cv2.LINE_AA)  # fmt: skip
