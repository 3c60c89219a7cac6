"""The composer: hosts (macrophages, hemophagocytes) and their contents pasted onto a crop.

A host is real (a Giemsa macrophage), quilted from real-host texture or procedural
(:mod:`hemoscan.synthetic.hosts`); 1-4 real cells in thin clear halos make it a
hemophagocyte, a hard negative (a cell on its edge, dots, vacuoles) leaves it a macrophage.
:class:`~hemoscan_training.config.ComposerSection` sets the shares. Boxes are float32
``[N, 5]`` (``x1, y1, x2, y2`` pixels of the crop, class index into
:data:`~hemoscan_training.splits.CLASSES`).
"""

from __future__ import annotations

import cv2
import numpy as np

from hemoscan.synthetic.hosts import (
    Host,
    cytoplasm_points,
    draw_dots,
    draw_parasites,
    draw_vacuoles,
    field_colours,
    procedural_host,
    stain_jitter,
    texture_host,
)
from hemoscan.synthetic.primitives import paste, soft_ellipse

from .config import ComposerSection
from .real_parts import FREE_PLATELET_SIZE, CellCrop, real_host, real_host_aug, sized_cell
from .splits import Boxes, C

FREE_TO_ENGULFED = {C["rbc"]: C["engulfed_rbc"], C["nucleated"]: C["engulfed_nucleated"],
                    C["platelet"]: C["engulfed_platelet"]}  # fmt: skip


class Composer:
    """Pastes hosts (macrophages / hemophagocytes) and their contents onto a crop, as
    ``recipe`` says (default: v2's recipe)."""

    def __init__(
        self,
        real_hosts: list[tuple[np.ndarray, np.ndarray]],
        bank: list[CellCrop],
        recipe: ComposerSection = ComposerSection(),
    ) -> None:
        self.real_hosts = real_hosts
        self.recipe = recipe
        self.bank = {
            c: [b for b in bank if b.cls == c] for c in (C["rbc"], C["nucleated"], C["platelet"])
        }
        self.aug = real_host_aug()

    def __call__(
        self, rng: np.random.Generator, img: np.ndarray, boxes: Boxes, rbc_d: float
    ) -> tuple[np.ndarray, Boxes]:
        canvas = img.astype(np.float32)
        bg, dark = field_colours(img)
        occupied = np.zeros(img.shape[:2], bool)
        new: list[list[float]] = []
        for _ in range(int(rng.integers(1, 3))):
            host = self._host(rng, rbc_d * rng.uniform(3, 6), bg, dark)
            placed = self._place(rng, host, occupied)
            if placed is None:
                continue
            x0, y0 = placed
            paste(canvas, host.rgb, host.alpha, x0, y0)
            full = np.zeros_like(occupied)
            _blit(full, host.mask, x0, y0)
            occupied |= full
            # cells whose centre the host covers are gone
            cx = ((boxes[:, 0] + boxes[:, 2]) / 2).astype(int).clip(0, img.shape[1] - 1)
            cy = ((boxes[:, 1] + boxes[:, 3]) / 2).astype(int).clip(0, img.shape[0] - 1)
            boxes = boxes[~full[cy, cx]]
            ys, xs = np.nonzero(host.mask)
            hbox = [x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1]
            label = C["macrophage"]
            r = self.recipe
            if r.p_inclusions and rng.random() < r.p_inclusions:
                self._inclusions(rng, canvas, host, x0, y0, rbc_d, bg, dark)
            if rng.random() < r.p_engulf:
                inside = self._engulf(rng, canvas, host, x0, y0, rbc_d, bg)
                if inside:
                    label = C["hemophagocyte"]
                    new.extend(inside)
            elif rng.random() < r.p_hard_negative:
                new.extend(self._hard_negative(rng, canvas, host, x0, y0, rbc_d, bg, dark))
            new.append([*hbox, label])
        if rng.random() < 0.3:
            new.extend(self._clump(rng, canvas, occupied, rbc_d))
        boxes = np.concatenate([boxes, np.asarray(new, np.float32).reshape(-1, 5)])
        h, w = img.shape[:2]
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
        return np.clip(canvas, 0, 255).astype(np.uint8), boxes

    def engulf_in_real_hosts(
        self, rng: np.random.Generator, img: np.ndarray, boxes: Boxes, rbc_d: float, p: float
    ) -> tuple[np.ndarray, Boxes]:
        """Each real ``macrophage`` box of ``boxes`` becomes, with probability ``p``, a
        hemophagocyte: 1-4 real cells in halos placed inside the ellipse its box inscribes,
        away from its darkest third (the nucleus). Returns the new crop and boxes."""
        canvas = img.astype(np.float32)
        bg, _ = field_colours(img)
        boxes = boxes.copy()
        new: list[list[float]] = []
        H, W = img.shape[:2]
        for k in np.flatnonzero(boxes[:, 4] == C["macrophage"]):
            if rng.random() >= p:
                continue
            x1, y1 = int(max(0, boxes[k, 0])), int(max(0, boxes[k, 1]))
            x2, y2 = int(min(W, boxes[k, 2])), int(min(H, boxes[k, 3]))
            if min(x2 - x1, y2 - y1) < 1.5 * rbc_d:
                continue  # too small (or cut by the crop) to hold a cell in a halo
            mask = soft_ellipse(y2 - y1, x2 - x1, blur=0, shrink=0.08 * min(x2 - x1, y2 - y1)) > 0.5
            gray = img[y1:y2, x1:x2].mean(2)
            nucleus = mask & (gray < np.percentile(gray[mask], 33))
            host = Host(canvas[y1:y2, x1:x2].copy(), mask.astype(np.float32), mask, nucleus)
            inside = self._engulf(rng, canvas, host, x1, y1, rbc_d, bg)
            if inside:
                boxes[k, 4] = C["hemophagocyte"]
                new.extend(inside)
        boxes = np.concatenate([boxes, np.asarray(new, np.float32).reshape(-1, 5)])
        return np.clip(canvas, 0, 255).astype(np.uint8), boxes

    def free_platelets(
        self, rng: np.random.Generator, img: np.ndarray, boxes: Boxes, rbc_d: float
    ) -> tuple[np.ndarray, Boxes]:
        """1-6 real platelets pasted where no box of ``boxes`` holds their centre (a free
        platelet lies on the glass between cells); returns the new crop and boxes."""
        canvas = img.astype(np.float32)
        H, W = img.shape[:2]
        taken = boxes[:, :4]
        new: list[list[float]] = []
        for _ in range(int(rng.integers(1, 7))):
            rgb, alpha = sized_cell(rng, self.bank, C["platelet"], rbc_d, FREE_PLATELET_SIZE)
            h, w = alpha.shape
            for _ in range(20):
                cx, cy = rng.uniform(w / 2, W - w / 2), rng.uniform(h / 2, H - h / 2)
                x1, y1, x2, y2 = taken.T
                if not ((x1 <= cx) & (cx <= x2) & (y1 <= cy) & (cy <= y2)).any():
                    bx, by = round(cx - w / 2), round(cy - h / 2)
                    paste(canvas, rgb, alpha, bx, by)
                    new.append([bx, by, bx + w, by + h, C["platelet"]])
                    taken = np.vstack([taken, np.float32(new[-1][:4])])
                    break
        boxes = np.concatenate([boxes, np.asarray(new, np.float32).reshape(-1, 5)])
        return np.clip(canvas, 0, 255).astype(np.uint8), boxes

    def _host(self, rng: np.random.Generator, d: float, bg: np.ndarray, dark: np.ndarray) -> Host:
        """A host of diameter ``d``: real, quilted from real texture, or procedural."""
        r = self.recipe
        if rng.random() < 1 - r.p_real_host or not self.real_hosts:
            lobes = int(rng.integers(2, 4)) if r.p_lobed and rng.random() < r.p_lobed else 1
            if r.p_texture_host and self.real_hosts and rng.random() < r.p_texture_host:
                source = self.real_hosts[rng.integers(len(self.real_hosts))]
                host = texture_host(rng, d, source, dark, lobes, r.host_hue)
                if host is not None:
                    return host
            return procedural_host(rng, d, bg, dark, lobes)
        host = real_host(rng, d, self.real_hosts[rng.integers(len(self.real_hosts))], self.aug)
        if r.host_hue:
            host.rgb = stain_jitter(rng, host.rgb, r.host_hue)
        return host

    @staticmethod
    def _place(
        rng: np.random.Generator, host: Host, occupied: np.ndarray
    ) -> tuple[int, int] | None:
        H, W = occupied.shape
        S = host.mask.shape[0]
        for _ in range(10):
            x0 = int(rng.integers(min(0, W - S), max(0, W - S) + 1))
            y0 = int(rng.integers(min(0, H - S), max(0, H - S) + 1))
            region = np.zeros_like(occupied)
            _blit(region, host.mask, x0, y0)
            if not (region & occupied).any():
                return x0, y0
        return None

    def _engulf(
        self,
        rng: np.random.Generator,
        canvas: np.ndarray,
        host: Host,
        x0: int,
        y0: int,
        rbc_d: float,
        bg: np.ndarray,
    ) -> list[list[float]]:
        """1-4 real cells inside the cytoplasm, each in a thin clear halo; their boxes."""
        halo_col = np.clip(
            np.maximum(bg, 0) * 0.3 + np.array([250, 236, 242], np.float32) * 0.7, 0, 255
        )
        nucleus = cv2.dilate(host.nucleus.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        placed: list[tuple[float, float, float]] = []
        out = []
        for _ in range(int(rng.integers(1, 5))):
            cls = int(rng.choice([C["rbc"], C["nucleated"], C["platelet"]], p=[0.6, 0.25, 0.15]))
            rgb, alpha = sized_cell(rng, self.bank, cls, rbc_d)
            h, w = alpha.shape
            margin = rng.uniform(1.5, 3.0)
            r = max(h, w) / 2 + margin + 1
            k = int(2 * r) | 1
            room = (
                cv2.erode(
                    host.mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))
                )
                > 0
            )
            ys, xs = np.nonzero(room & ~nucleus)
            if not len(xs):
                ys, xs = np.nonzero(room)
            ok = [
                (x, y)
                for x, y in zip(xs[::3], ys[::3])
                if all((x - px) ** 2 + (y - py) ** 2 > (r + pr) ** 2 for px, py, pr in placed)
            ]
            if not ok:
                continue
            cx, cy = ok[rng.integers(len(ok))]
            placed.append((cx, cy, r))
            hh, hw = int(round(h + 2 * margin)), int(round(w + 2 * margin))
            halo = soft_ellipse(hh, hw, blur=0.8) * rng.uniform(0.75, 0.95)
            halo_rgb = np.broadcast_to(
                halo_col + rng.normal(0, 3, 3).astype(np.float32), (hh, hw, 3)
            )
            paste(canvas, halo_rgb, halo, x0 + cx - hw // 2, y0 + cy - hh // 2)
            paste(canvas, rgb, alpha, x0 + cx - w // 2, y0 + cy - h // 2)
            bx, by = x0 + cx - w // 2, y0 + cy - h // 2
            out.append([bx, by, bx + w, by + h, FREE_TO_ENGULFED[cls]])
        return out

    def _clump(
        self, rng: np.random.Generator, canvas: np.ndarray, occupied: np.ndarray, rbc_d: float
    ) -> list[list[float]]:
        """3-7 real cells piled on one another, no host and no halo: a crowded clump, which is
        not a hemophagocyte. Each cell keeps its free label."""
        H, W = occupied.shape
        cx, cy = rng.uniform(0.15, 0.85) * W, rng.uniform(0.15, 0.85) * H
        if occupied[int(cy), int(cx)]:
            return []
        out = []
        for _ in range(int(rng.integers(3, 8))):
            cls = int(rng.choice([C["rbc"], C["nucleated"]], p=[0.6, 0.4]))
            rgb, alpha = sized_cell(rng, self.bank, cls, rbc_d)
            h, w = alpha.shape
            bx = int(round(cx + rng.normal(0, rbc_d * 0.45) - w / 2))
            by = int(round(cy + rng.normal(0, rbc_d * 0.45) - h / 2))
            paste(canvas, rgb, np.minimum(alpha * 1.05, 1.0), bx, by)
            out.append([bx, by, bx + w, by + h, cls])
        return out

    def _hard_negative(
        self,
        rng: np.random.Generator,
        canvas: np.ndarray,
        host: Host,
        x0: int,
        y0: int,
        rbc_d: float,
        bg: np.ndarray,
        dark: np.ndarray,
    ) -> list[list[float]]:
        """A cell lying on the host's edge (no halo, keeps its free label), or dots / vacuoles."""
        kind = rng.random()
        if kind < 0.5:
            cls = C["rbc"] if rng.random() < 0.6 else C["nucleated"]
            rgb, alpha = sized_cell(rng, self.bank, cls, rbc_d)
            contours, _ = cv2.findContours(
                host.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
            )
            edge = max(contours, key=len)[:, 0]
            ex, ey = edge[rng.integers(len(edge))]
            h, w = alpha.shape
            bx, by = int(x0 + ex - w // 2), int(y0 + ey - h // 2)
            paste(canvas, rgb, np.minimum(alpha * 1.05, 1.0), bx, by)
            return [[bx, by, bx + w, by + h, cls]]
        ys, xs = cytoplasm_points(host)
        if not len(xs):
            return []
        if kind < 0.75:
            draw_dots(rng, canvas, xs + x0, ys + y0, rbc_d, dark)
        else:
            draw_vacuoles(rng, canvas, xs + x0, ys + y0, rbc_d, bg)
        return []

    @staticmethod
    def _inclusions(
        rng: np.random.Generator,
        canvas: np.ndarray,
        host: Host,
        x0: int,
        y0: int,
        rbc_d: float,
        bg: np.ndarray,
        dark: np.ndarray,
    ) -> None:
        """Non-blood inclusions in the cytoplasm, unlabelled: parasite-like bodies (amastigote
        sized, platelet-like, without a halo), dark dots or empty vacuoles."""
        ys, xs = cytoplasm_points(host)
        if not len(xs):
            return
        kind = rng.random()
        if kind < 0.5:
            draw_parasites(rng, canvas, xs + x0, ys + y0, rbc_d, dark)
        elif kind < 0.75:
            draw_dots(rng, canvas, xs + x0, ys + y0, rbc_d, dark)
        else:
            draw_vacuoles(rng, canvas, xs + x0, ys + y0, rbc_d, bg)


def _blit(dst: np.ndarray, src: np.ndarray, x0: int, y0: int) -> None:
    H, W = dst.shape
    h, w = src.shape
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + h)
    if cx1 > cx0 and cy1 > cy0:
        dst[cy0:cy1, cx0:cx1] |= src[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
