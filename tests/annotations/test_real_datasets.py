"""A few real files of the shared public datasets, when they are present (skipped otherwise)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from hemoscan.annotations import AnnotationWarning, DatasetSpec, read_dataset

DATASETS = Path(__file__).resolve().parents[3] / "shared" / "datasets"
TXL = DATASETS / "txl-pbc"
SEGPC = DATASETS / "segpc-marrow"


def _copy_some(
    src_images: Path, src_labels: Path, dst: Path, n: int, label_suffix: str
) -> list[str]:
    names = sorted(p.name for p in src_images.iterdir())[:n]
    (dst / "images").mkdir(parents=True)
    (dst / "labels").mkdir()
    for name in names:
        shutil.copy(src_images / name, dst / "images" / name)
        label = src_labels / (Path(name).stem + label_suffix)
        shutil.copy(label, dst / "labels" / label.name)
    return names


@pytest.mark.skipif(not TXL.is_dir(), reason="shared/datasets/txl-pbc not present")
def test_txl_pbc_yolo(tmp_path: Path) -> None:
    names = _copy_some(TXL / "images" / "val", TXL / "labels" / "val", tmp_path, 3, ".txt")
    shutil.copy(TXL / "labels" / "val" / "classes.txt", tmp_path / "labels")
    spec = {
        "format": "yolo",
        "root": str(tmp_path),
        "class_map": {"0": "nucleated", "1": "rbc", "2": "platelet"},
    }
    with pytest.warns(AnnotationWarning, match="classes.txt"):
        recs = read_dataset(spec)
    assert [r.image_path.name for r in recs] == names
    for r in recs:
        lines = [
            ln
            for ln in (tmp_path / "labels" / f"{r.image_path.stem}.txt").read_text().splitlines()
            if ln.strip()
        ]
        assert len(r) == len(lines) > 0
        assert set(r.labels) <= {"nucleated", "rbc", "platelet"}
        assert (r.boxes[:, 2] > r.boxes[:, 0]).all() and r.boxes.max() <= max(r.width, r.height)
        assert r.supervised == {"nucleated", "rbc", "platelet"}


@pytest.mark.skipif(not SEGPC.is_dir(), reason="shared/datasets/segpc-marrow not present")
def test_segpc_marrow_binary_jpeg_masks(tmp_path: Path) -> None:
    _copy_some(SEGPC / "images", SEGPC / "masks", tmp_path, 2, ".jpg")
    spec = DatasetSpec(
        "masks",
        tmp_path,
        {"mask": "nucleated"},
        labels=Path("labels"),
        supervised=[],
        options={"min_area": 200},
    )
    recs = read_dataset(spec)
    assert len(recs) == 2
    for r in recs:
        assert (r.width, r.height) == (512, 512)
        assert len(r) + len(r.ignore) > 0 and set(r.labels) == {"nucleated"}
        assert r.supervised == frozenset()
        sizes = np.concatenate([r.boxes[:, 2:] - r.boxes[:, :2]])
        assert (sizes > 10).all()  # whole plasma cells, no JPEG specks
