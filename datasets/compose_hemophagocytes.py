"""Write a seeded set of COMPOSED hemophagocyte fields to disk: PNG images + one COCO JSON.

    python datasets/compose_hemophagocytes.py --part val --n 200 --seed 20260 --out composed-val
    python datasets/compose_hemophagocytes.py --part train --n 500 --seed 31337 --out composed-dev

Field ``i`` is ``ComposedCrops(data_root, crop, seed, part).compose(i)`` from
``hemoscan_training.data`` (the training composer): real red cells, white cells and platelets
from TXL-PBC placed in clear halos inside real Giemsa or procedural macrophages, on real
TXL-PBC or segpc marrow fields. ``--part val`` uses only parts training never sees (TXL-PBC
val fields and cells, every 5th segpc field, the held-out Giemsa host); ``--part train`` the
training parts. See ``datasets/composed-hemophagocytes.md``.

The COCO file (``OUT/annotations.json``, images in ``OUT/images/``) uses hemoscan's class
names as categories (``rbc``, ``platelet``, ``nucleated``, ``macrophage``, ``hemophagocyte``,
``engulfed_rbc``, ``engulfed_nucleated``, ``engulfed_platelet``), so
``hemoscan.annotations.read_dataset({"format": "coco", "root": "OUT/annotations.json"})``
reads it without a class map. ``bbox`` is ``[x, y, w, h]`` pixels, origin top-left. Each
engulfed cell carries its host's annotation id in ``attributes.parent_id``; hemoscan's COCO
reader links engulfed cells to the smallest hemophagocyte box holding their centre, which gives
the same host (the generator's hosts are linked that way too). Each ``macrophage`` is a hard
negative (a host without engulfed cells; some carry a cell lying on top without a halo, dark
dots or empty vacuoles) and has ``attributes.hard_negative: true``. Each image records its
``background`` (``txl-pbc`` or ``segpc-marrow``) and ``supervised`` classes: on marrow
backgrounds only plasma cells are labelled (as ``nucleated``), so rbc / platelet / nucleated
are positives only there. Every image is COMPOSED: figures measured on it must say so.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "datasets"
CATEGORIES = (
    "rbc", "platelet", "nucleated", "macrophage", "hemophagocyte",
    "engulfed_rbc", "engulfed_nucleated", "engulfed_platelet",
)  # fmt: skip
LICENCE_NOTE = (
    "Composed from TXL-PBC (MIT; PBC images CC BY 4.0), segpc-marrow (CC BY-NC-SA 4.0) and "
    "giemsa-macrophages (GPL-2.0): each image inherits the terms of the parts it was made of."
)


def write_composed_set(
    data_root: Path, out: Path, part: str = "val", n: int = 200, seed: int = 20260, crop: int = 512
) -> Path:
    """Write ``n`` composed fields and ``OUT/annotations.json``; returns the JSON path."""
    import cv2
    from hemoscan_training.composed import ComposedSet

    if part not in ("train", "val"):
        raise ValueError(f"part must be 'train' or 'val', not {part!r}")
    fields = ComposedSet(data_root, part, seed, n, crop)
    (out / "images").mkdir(parents=True, exist_ok=True)
    cat_id = {name: i + 1 for i, name in enumerate(CATEGORIES)}
    images, annotations = [], []
    for i in range(n):
        f = fields.field(i)
        rec = f.record
        file_name = f"{fields.name(i)}.png"
        if not cv2.imwrite(
            str(out / "images" / file_name), cv2.cvtColor(f.image, cv2.COLOR_RGB2BGR)
        ):
            raise OSError(f"{out / 'images' / file_name}: could not write the image")
        image_id = i + 1
        images.append({
            "id": image_id, "file_name": file_name, "width": rec.width, "height": rec.height,
            "composed": True, "part": part, "seed": seed, "index": i,
            "background": f.background, "supervised": sorted(rec.supervised),
        })  # fmt: skip
        first = len(annotations) + 1
        for k, ((x1, y1, x2, y2), label, parent) in enumerate(
            zip(rec.boxes.tolist(), rec.labels, rec.parents)
        ):
            ann = {
                "id": first + k,
                "image_id": image_id,
                "category_id": cat_id[label],
                "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                "area": round((x2 - x1) * (y2 - y1), 2),
                "iscrowd": 0,
            }
            if parent >= 0:
                ann["attributes"] = {"parent_id": first + parent}
            elif label == "macrophage":
                ann["attributes"] = {"hard_negative": True}
            annotations.append(ann)
    coco = {
        "info": {
            "description": (
                f"hemoscan COMPOSED hemophagocyte fields (not real hemophagocytes): part={part}, "
                f"seed={seed}, n={n}, crop={crop}"
            ),
            "composed": True,
            "generator": "hemoscan_training.data.ComposedCrops via datasets/compose_hemophagocytes.py",
            "licence_note": LICENCE_NOTE,
        },
        "images": images,
        "annotations": annotations,
        "categories": [{"id": cat_id[c], "name": c, "supercategory": "cell"} for c in CATEGORIES],
    }
    path = out / "annotations.json"
    path.write_text(json.dumps(coco, indent=1) + "\n", encoding="utf-8")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--part", choices=("train", "val"), default="val",
                   help="val: held-apart parts only (for reporting); train: training parts")  # fmt: skip
    p.add_argument("--n", type=int, default=200, help="number of fields")
    p.add_argument("--seed", type=int, default=20260, help="seed (training runs use 0)")
    p.add_argument("--crop", type=int, default=512, help="field size, pixels")
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT,
                   help="folder of the public sets (txl-pbc, segpc-marrow, giemsa-macrophages)")  # fmt: skip
    p.add_argument("--out", type=Path, required=True, help="output folder")
    args = p.parse_args(argv)
    if args.n < 1 or args.crop < 64:
        p.error("--n must be >= 1 and --crop >= 64")
    if not (args.data_root / "txl-pbc").is_dir():
        p.error(f"the public sets were not found at {args.data_root} (set --data-root)")
    path = write_composed_set(args.data_root, args.out, args.part, args.n, args.seed, args.crop)
    print(f"{args.n} COMPOSED fields ({args.part} parts, seed {args.seed}) -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
