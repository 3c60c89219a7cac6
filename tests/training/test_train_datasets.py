"""Annotated training crops: scale, ignore regions, unsupervised classes, determinism, splits."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hemoscan_training.config import DEFAULT_CLASSES, AugmentSection, ConfigError
from hemoscan_training.datasets import (
    AnnotatedCrops,
    HedJitter,
    SourceImage,
    crop_with_ignore,
    negative_mask,
    read_sources,
    split_val,
)

from tests.training.synthetic import CLASS_MAP, RBC_D, write_yolo_set

NO_AUG = AugmentSection(
    p_hed=0, p_hsv=0, p_brightness=0, p_blur=0, p_jpeg=0, p_noise=0, scale=(1.0, 1.0), flips=False
)
MEAN, STD = np.full(3, 128.0, np.float32), np.full(3, 64.0, np.float32)
K = len(DEFAULT_CLASSES)


def _entry(root: Path, **extra: object) -> dict[str, object]:
    return {"format": "yolo", "root": str(root), "split": "train", "class_map": CLASS_MAP, **extra}


def _crops(
    images: list[SourceImage], crop: int, aug: AugmentSection = NO_AUG, seed: int = 0
) -> AnnotatedCrops:
    return AnnotatedCrops([images], [1.0], K, crop, seed, aug, MEAN, STD, stride=8)


def test_red_cells_are_brought_to_the_models_size(tmp_path: Path) -> None:
    root = write_yolo_set(tmp_path, {"train": 2})
    (measured,) = read_sources([_entry(root)], DEFAULT_CLASSES, 28.0, "data.train")
    assert [im.scale for im in measured] == pytest.approx([28.0 / RBC_D] * 2)
    (given,) = read_sources(
        [_entry(root, rbc_diameter_px=7.0)], DEFAULT_CLASSES, 28.0, "data.train"
    )
    assert given[0].scale == pytest.approx(4.0)
    (direct,) = read_sources([_entry(root, scale=0.5)], DEFAULT_CLASSES, 28.0, "data.train")
    assert direct[0].scale == 0.5
    assert np.all(measured[0].neg_weight == [c in ("rbc", "nucleated") for c in DEFAULT_CLASSES])
    with pytest.raises(ConfigError, match=r"data\.train\[0\] .*no rbc boxes .*set rbc_diameter_px"):
        read_sources(
            [_entry(root, class_map={"0": "nucleated", "1": "drop"})],
            DEFAULT_CLASSES,
            28.0,
            "data.train",
        )


def test_crops_are_a_function_of_the_index(tmp_path: Path) -> None:
    (images,) = read_sources(
        [_entry(write_yolo_set(tmp_path, {"train": 3}))], DEFAULT_CLASSES, RBC_D, "data.train"
    )
    a, b = _crops(images, 64, AugmentSection()), _crops(images, 64, AugmentSection())
    for i in (0, 7):
        sa, sb = a[i], b[i]
        assert all(np.array_equal(sa[k].numpy(), sb[k].numpy()) for k in sa)
    assert not np.array_equal(a[0]["image"].numpy(), a[1]["image"].numpy())
    s = a[3]
    assert (
        s["image"].shape == (3, 64, 64)
        and s["heatmap"].shape == (K, 8, 8)
        and s["neg_mask"].shape == (1, 8, 8)
    )


def test_ignore_regions_and_unsupervised_classes_switch_negatives_off(tmp_path: Path) -> None:
    root = write_yolo_set(tmp_path, {"train": 1}, size=96)
    ignore_nucleated = _entry(
        root, class_map={"0": "ignore", "1": "rbc"}, supervised=["rbc", "platelet"]
    )
    (images,) = read_sources([ignore_nucleated], DEFAULT_CLASSES, RBC_D, "data.train")
    src = images[0]
    assert len(src.ignore) == 2 and set(src.boxes[:, 4].astype(int)) == {
        DEFAULT_CLASSES.index("rbc")
    }
    sample = _crops(images, 96)[0]  # crop = image, no augmentation: pixels stay where they are
    expected = np.ones((12, 12), np.float32)
    for x1, y1, x2, y2 in src.ignore:
        expected[int(y1) // 8 : int(np.ceil(y2 / 8)), int(x1) // 8 : int(np.ceil(x2 / 8))] = 0
    assert np.array_equal(sample["neg_mask"].numpy()[0], expected)
    assert sample["neg_weight"].tolist() == [
        float(c in ("rbc", "platelet")) for c in DEFAULT_CLASSES
    ]
    assert sample["heatmap"][DEFAULT_CLASSES.index("rbc")].max() == 1.0
    assert sample["heatmap"][DEFAULT_CLASSES.index("nucleated")].max() == 0.0


def test_boxes_cut_by_the_crop_become_ignore_regions() -> None:
    img = np.zeros((64, 100, 3), np.uint8)
    img[..., 0] = np.arange(100)  # the crop's first pixel tells where it starts
    a, b = [10, 10, 30, 30, 0], [55, 10, 75, 30, 1]
    boxes = np.array([a, b], np.float32)
    ignore = np.array([[0, 40, 20, 60]], np.float32)
    seen = set()
    for seed in range(40):
        crop, kept, ign = crop_with_ignore(img, boxes, ignore, 64, np.random.default_rng(seed))
        x0 = int(crop[0, 0, 0])
        assert crop.shape == (64, 64, 3) and kept.shape[1] == 5 and ign.shape[1] == 4
        visible_a = max(0, 30 - max(10, x0))
        regions = {tuple(r) for r in ign.tolist()}
        assert (1 in kept[:, 4]) and tuple(kept[kept[:, 4] == 1][0, :4]) == (
            55 - x0,
            10,
            min(64, 75 - x0),
            30,
        )
        if visible_a >= 0.4 * 20:
            seen.add("kept")
            assert 0 in kept[:, 4]
        elif visible_a > 0:
            seen.add("cut")
            assert 0 not in kept[:, 4] and (max(10, x0) - x0, 10, 30 - x0, 30) in regions
        else:
            seen.add("gone")
            assert 0 not in kept[:, 4]
        assert ((0, 40, 20 - x0, 60) in regions) == (x0 < 20)
        assert len(regions) == int(0 < visible_a < 8) + int(x0 < 20)
    assert seen == {"kept", "cut", "gone"}


def test_negative_mask_marks_every_touched_cell() -> None:
    raster = np.zeros((32, 32), np.uint8)
    raster[9, 17] = 1
    m = negative_mask(raster, 8)
    assert m.shape == (1, 4, 4) and m[0, 1, 2] == 0 and m.sum() == 15


def test_hed_jitter_varies_stain_and_keeps_the_image_otherwise() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(40, 230, (32, 32, 3)).astype(np.uint8)
    same = HedJitter(0.0, 0.0, p=1.0)
    same.set_random_seed(0)
    assert np.abs(same(image=img)["image"].astype(int) - img).max() <= 1
    jitter = HedJitter(0.2, 0.2, p=1.0)
    jitter.set_random_seed(0)
    out = jitter(image=img)["image"]
    assert (
        out.dtype == np.uint8
        and out.shape == img.shape
        and np.abs(out.astype(int) - img).mean() > 2
    )


def test_validation_split_is_seeded_and_disjoint(tmp_path: Path) -> None:
    (images,) = read_sources(
        [_entry(write_yolo_set(tmp_path, {"train": 5}))], DEFAULT_CLASSES, RBC_D, "data.train"
    )
    (train,), val = split_val([images], 0.4, seed=3)
    (train2,), val2 = split_val([images], 0.4, seed=3)
    assert [v.path for v in val] == [v.path for v in val2] and [t.path for t in train] == [
        t.path for t in train2
    ]
    assert len(val) == 2 and len(train) == 3
    assert not {v.path for v in val} & {t.path for t in train}
