"""How closely tiled prediction matches whole-image prediction for a real model.

With the hand-set test model (small receptive field) the two are identical (a test checks it).
A deep network sees further than any practical overlap, so its outputs near window borders
differ slightly; this prints, for procedurally generated 1024x1024 example fields, how many
whole-image detections the tiled run reproduces (same class, IoU >= 0.5) and how counts differ.

    python benchmarks/tiling_agreement.py [--model NAME_OR_FOLDER] [--fields 6]
"""

from __future__ import annotations

import argparse
from collections import Counter

import numpy as np

from hemoscan.examples import render_example_tile
from hemoscan.inference.predictor import Predictor
from hemoscan.models.loading import DEFAULT_MODEL, load_model


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    parser.add_argument("--fields", type=int, default=6)
    args = parser.parse_args()
    model = load_model(args.model)
    whole_predictor = Predictor(model, tile_size=1024, overlap=0)
    rng = np.random.default_rng(7)
    fields = [
        render_example_tile(rng, (1024, 1024), hemophagocytes=1, macrophages=1)[0]
        for _ in range(args.fields)
    ]
    whole = [whole_predictor.predict(f) for f in fields]
    print(
        f"model {model.config.name}; {args.fields} example fields of 1024x1024 (procedurally generated)"
    )
    for tile, overlap in ((512, 128), (512, 256), (384, 192)):
        tiled = [Predictor(model, tile_size=tile, overlap=overlap).predict(f) for f in fields]
        matched = total = 0
        diff: Counter[str] = Counter()
        for w, t in zip(whole, tiled):
            for label in {d.label for d in w} | {d.label for d in t}:
                wb = np.array([[d.x1, d.y1, d.x2, d.y2] for d in w if d.label == label]).reshape(
                    -1, 4
                )
                tb = np.array([[d.x1, d.y1, d.x2, d.y2] for d in t if d.label == label]).reshape(
                    -1, 4
                )
                total += len(wb)
                diff[label] += len(tb) - len(wb)
                if len(wb) and len(tb):
                    matched += int((iou(wb, tb).max(axis=1) >= 0.5).sum())
        print(f"tile {tile} overlap {overlap}: {matched}/{total} whole-image detections reproduced "
              f"({100 * matched / max(total, 1):.1f}%); count difference tiled - whole: {dict(diff)}")  # fmt: skip


if __name__ == "__main__":
    main()
