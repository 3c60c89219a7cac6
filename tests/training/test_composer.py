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

from tests.synthetic.test_hosts import fake_real_host  # noqa: E402

RBC_D = 32.0


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
    composer = Composer([fake_real_host()], _bank(), recipe)
    image, boxes = composer(rng, field, np.zeros((0, 5), np.float32), RBC_D)
    return field, image, boxes


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


def test_free_platelets_land_off_labelled_cells_with_their_boxes() -> None:
    rng = np.random.default_rng(3)
    field = np.full((200, 200, 3), 225, np.uint8)
    cell = np.array([[60.0, 60.0, 140.0, 140.0, C["nucleated"]]], np.float32)
    composer = Composer([fake_real_host()], _bank(), ComposerSection())
    for _ in range(5):
        image, boxes = composer.free_platelets(rng, field, cell, RBC_D)
        assert np.array_equal(boxes[0], cell[0])
        new = boxes[1:]
        assert 1 <= len(new) <= 6 and (new[:, 4] == C["platelet"]).all()
        side = (new[:, 2] - new[:, 0] + new[:, 3] - new[:, 1]) / 2
        assert ((side >= 0.3 * RBC_D) & (side <= 0.6 * RBC_D)).all()
        cx, cy = (new[:, 0] + new[:, 2]) / 2, (new[:, 1] + new[:, 3]) / 2
        assert not ((cx >= 60) & (cx <= 140) & (cy >= 60) & (cy <= 140)).any()
        for x1, y1, x2, y2, _ in new.astype(int):  # each box holds pasted pixels
            assert not (image[y1:y2, x1:x2] == 225).all()
