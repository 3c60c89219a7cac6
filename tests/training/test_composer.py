"""The composed recipe's host drawing (``hemoscan_training.composer`` with
``hemoscan.synthetic.hosts``) on synthetic parts: no public sets needed."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("albumentations")

from hemoscan_training.composer import Composer  # noqa: E402
from hemoscan_training.config import ComposerSection  # noqa: E402
from hemoscan_training.real_parts import CellCrop  # noqa: E402
from hemoscan_training.splits import CLASSES, C  # noqa: E402

from hemoscan.synthetic.hosts import silhouette, stain_jitter, texture_host  # noqa: E402

RBC_D = 32.0


def _source(size: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A fake real host: pale violet in a disc (the mask), a third of it a dark nucleus."""
    rng = np.random.default_rng(seed)
    rgb = np.clip(rng.normal([170, 150, 210], 4, (size, size, 3)), 0, 255).astype(np.uint8)
    yy, xx = np.mgrid[:size, :size]
    mask = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size * 0.45) ** 2).astype(np.uint8)
    rgb[(yy - size * 0.36) ** 2 + (xx - size * 0.36) ** 2 < (size * 0.26) ** 2] = (90, 40, 120)
    return rgb, mask


def _bank() -> list[CellCrop]:
    rng = np.random.default_rng(1)
    crops = []
    for cls, side in ((C["rbc"], 30), (C["nucleated"], 40), (C["platelet"], 10)):
        for _ in range(3):
            rgb = np.clip(rng.normal(150, 30, (side, side, 3)), 0, 255).astype(np.uint8)
            crops.append(CellCrop(rgb, cls, float(side)))
    return crops


def _compose(recipe: ComposerSection, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    field = np.full((256, 256, 3), 225, np.uint8)
    composer = Composer([_source()], _bank(), recipe)
    image, boxes = composer(rng, field, np.zeros((0, 5), np.float32), RBC_D)
    return field, image, boxes


@pytest.mark.parametrize("lobes", [1, 2, 3])
def test_silhouettes_fit_their_square(lobes: int) -> None:
    rng = np.random.default_rng(lobes)
    mask, alpha = silhouette(rng, 100.0, 137, lobes)
    assert mask.shape == alpha.shape == (137, 137) and mask.dtype == bool
    assert 0.15 < mask.mean() < 0.6
    assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())


def test_texture_host_quilts_the_source_inside_a_new_outline() -> None:
    source = _source()
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
    import cv2

    blue = np.full((4, 4, 3), (120, 110, 200), np.float32)
    base = cv2.cvtColor(blue.astype(np.uint8), cv2.COLOR_RGB2HSV)[0, 0, 0]
    shifts = []
    for seed in range(200):
        out = stain_jitter(np.random.default_rng(seed), blue, 24.0).astype(np.uint8)
        shifts.append(int(cv2.cvtColor(out, cv2.COLOR_RGB2HSV)[0, 0, 0]) - int(base))
    assert -9 <= min(shifts) and max(shifts) <= 25 and np.mean(shifts) > 4


def test_inclusions_change_pixels_but_add_no_boxes() -> None:
    plain = ComposerSection(p_real_host=0.0, p_engulf=0.0, p_hard_negative=0.0)
    with_inclusions = ComposerSection(p_real_host=0.0, p_engulf=0.0, p_hard_negative=0.0,
                                      p_inclusions=1.0)  # fmt: skip
    for seed in range(4):
        _, a, boxes_a = _compose(plain, seed)
        _, b, boxes_b = _compose(with_inclusions, seed)
        labels = {CLASSES[int(c)] for c in boxes_b[:, 4]}  # (clumps may add free cells)
        assert "macrophage" in labels and not any(c.startswith(("hemo", "engulfed")) for c in labels)
        # the first host is drawn alike in both; only the inclusions set it apart
        x1, y1, x2, y2 = boxes_a[0, :4].astype(int)
        assert np.array_equal(boxes_a[0], boxes_b[0])
        assert not np.array_equal(a[y1:y2, x1:x2], b[y1:y2, x1:x2])


def test_every_recipe_host_kind_yields_labelled_hemophagocytes() -> None:
    recipes = {
        "procedural": ComposerSection(p_real_host=0.0, p_engulf=1.0),
        "lobed texture": ComposerSection(p_real_host=0.0, p_texture_host=1.0, p_lobed=1.0,
                                         host_hue=20, p_engulf=1.0),  # fmt: skip
        "real, stained": ComposerSection(p_real_host=1.0, host_hue=20, p_engulf=1.0),
    }
    for name, recipe in recipes.items():
        labels: list[str] = []
        for seed in range(6):
            field, image, boxes = _compose(recipe, seed)
            assert image.shape == field.shape and image.dtype == np.uint8
            hosts = boxes[boxes[:, 4] == C["hemophagocyte"]]
            for box in boxes[np.isin(boxes[:, 4], [C["engulfed_rbc"], C["engulfed_nucleated"],
                                                   C["engulfed_platelet"]])]:  # fmt: skip
                cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
                assert any(h[0] <= cx <= h[2] and h[1] <= cy <= h[3] for h in hosts), name
            labels += [CLASSES[int(c)] for c in boxes[:, 4]]
        assert "hemophagocyte" in labels and "macrophage" not in labels, name
