"""datasets/compose_hemophagocytes.py writes a COCO set that hemoscan.annotations reads back
(needs the public sets beside the repository; skipped without them)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from hemoscan.annotations import read_dataset

REPO = Path(__file__).resolve().parents[2]
DATA_ROOT = REPO.parent / "shared" / "datasets"
pytestmark = pytest.mark.skipif(
    not (DATA_ROOT / "txl-pbc").is_dir(), reason=f"public sets not found at {DATA_ROOT}"
)


def _script():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "compose_hemophagocytes", REPO / "datasets" / "compose_hemophagocytes.py"
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def test_written_composed_set_reads_back_with_hosts_and_types(tmp_path: Path) -> None:
    from hemoscan_training.composed import ComposedSet

    # seed 3 / crop 192: field 1 holds a hemophagocyte with engulfed cells (chosen once, fixed)
    path = _script().write_composed_set(DATA_ROOT, tmp_path / "set", "val", n=2, seed=3, crop=192)
    coco = json.loads(path.read_text())
    assert coco["info"]["composed"] is True and len(coco["images"]) == 2
    records = read_dataset({"format": "coco", "root": str(path)})
    expected = ComposedSet(DATA_ROOT, "val", 3, 2, 192)
    n_engulfed = 0
    for rec, image in zip(records, coco["images"]):
        truth = expected.field(image["index"]).record
        assert rec.labels == truth.labels and rec.parents == truth.parents
        assert abs(rec.boxes - truth.boxes).max() < 0.01
        assert (rec.width, rec.height) == (192, 192)
        for i, label in enumerate(rec.labels):
            if label.startswith("engulfed_"):
                n_engulfed += 1
                assert rec.labels[rec.parents[i]] == "hemophagocyte"
    assert n_engulfed > 0
    by_id = {a["id"]: a for a in coco["annotations"]}
    names = {c["id"]: c["name"] for c in coco["categories"]}
    for a in coco["annotations"]:
        parent = a.get("attributes", {}).get("parent_id")
        if parent is not None:
            assert names[by_id[parent]["category_id"]] == "hemophagocyte"
