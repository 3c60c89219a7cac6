"""Painted hosts (:mod:`hemoscan.synthetic.hosts`): silhouettes, quilted texture, stain jitter."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from hemoscan.synthetic.hosts import silhouette, stain_jitter, texture_host


def fake_real_host(size: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fake real host: pale violet in a disc (the mask), a third of it a dark nucleus."""
    rng = np.random.default_rng(seed)
    rgb = np.clip(rng.normal([170, 150, 210], 4, (size, size, 3)), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:size, :size]
    mask = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.45) ** 2).astype(np.uint8)
    rgb[(yy - size * 0.36) ** 2 + (xx - size * 0.36) ** 2 < (size * 0.26) ** 2] = (90, 40, 120)
    return rgb, mask


@pytest.mark.parametrize("lobes", [1, 2, 3])
def test_silhouettes_fit_their_square(lobes: int) -> None:
    rng = np.random.default_rng(lobes)
    mask, alpha = silhouette(rng, 100.0, 137, lobes)
    assert mask.shape == alpha.shape == (137, 137) and mask.dtype == bool
    assert 0.15 < mask.mean() < 0.6
    assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def test_texture_host_quilts_the_source_inside_a_new_outline() -> None:
    source = fake_real_host()
    host = texture_host(np.random.default_rng(3), 120.0, source, np.array([60.0, 20, 90]), 2)
    assert host is not None
    inside = host.rgb[host.mask & ~host.nucleus]
    cytoplasm = source[0][(source[1] > 0)].astype(np.float32)
    # the quilt is made of the source's cytoplasm, not of the background around it
    assert abs(inside.mean(0) - cytoplasm.mean(0)).max() < 25
    assert host.nucleus.any() and (host.nucleus <= host.mask).all()
    thin = np.zeros_like(source[1])
    thin[:, 98:102] = 1  # a host too thin for any patch of cytoplasm
    assert texture_host(np.random.default_rng(3), 120.0, (source[0], thin), np.zeros(3)) is None


def test_stain_jitter_moves_hue_towards_magenta_more_than_away() -> None:
    blue = np.full((4, 4, 3), (120, 110, 200), np.float32)
    base = cv2.cvtColor(blue.astype(np.uint8), cv2.COLOR_RGB2HSV)[0, 0, 0]
    shifts = []
    for seed in range(200):
        out = stain_jitter(np.random.default_rng(seed), blue, 24.0).astype(np.uint8)
        shifts.append(int(cv2.cvtColor(out, cv2.COLOR_RGB2HSV)[0, 0, 0]) - int(base))
    assert -9 <= min(shifts) and max(shifts) <= 25 and np.mean(shifts) > 4
