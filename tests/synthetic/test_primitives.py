"""Shared drawing primitives (:mod:`hemoscan.synthetic.primitives`)."""

from __future__ import annotations

import numpy as np

from hemoscan.synthetic.primitives import paste, smooth_noise


def test_smooth_noise_is_a_resized_coarse_grid_of_the_given_spread() -> None:
    field = smooth_noise(np.random.default_rng(0), (60, 80), (4, 4), std=0.5)
    assert field.shape == (60, 80) and field.dtype == np.float32
    coarse = np.random.default_rng(0).normal(0.0, 0.5, (4, 4)).astype(np.float32)
    # bicubic upsampling passes near the grid values and keeps their spread
    assert abs(float(field.std()) - float(coarse.std())) < 0.5 * float(coarse.std())
    colour = smooth_noise(np.random.default_rng(0), (30, 20), (3, 3, 3))
    assert colour.shape == (30, 20, 3)
    again = smooth_noise(np.random.default_rng(0), (60, 80), (4, 4), std=0.5)
    assert np.array_equal(field, again)


def test_paste_blends_by_alpha_and_clips_at_the_border() -> None:
    canvas = np.zeros((10, 10, 3), np.float32)
    rgb = np.full((4, 4, 3), 100.0, np.float32)
    alpha = np.full((4, 4), 0.5, np.float32)
    paste(canvas, rgb, alpha, 8, -2)  # only a 2x2 corner lands on the canvas
    assert np.allclose(canvas[0:2, 8:10], 50.0)
    assert canvas.sum() == 4 * 3 * 50.0
