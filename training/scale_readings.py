"""How a model reads red-cell size at each working size, on TXL-PBC val (never trained on).

``--scale auto`` (:mod:`hemoscan.inference.scale`) rests on the model reading red cells at their
true size. This rescales every ``--every``-th TXL-PBC val field holding at least 6 labelled red
cells (:data:`~hemoscan.inference.scale.MIN_RBC`) so that its median labelled red cell is each of
``--sizes`` px, runs the model at its own thresholds and prints, per size, the median over fields
of (the median detected red cell's diameter / the median labelled one), with its interquartile
range::

    python -m hemoscan_training.scale_readings [--model NAME] [--sizes 26 32 40 48 56 64]

Detected red cells are measured as the scale estimate measures them
(:func:`hemoscan.inference.scale.measure`): the median ``(w + h) / 2`` of their boxes, input pixels.
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from hemoscan.inference.predictor import Predictor
from hemoscan.inference.scale import MIN_RBC, measure
from hemoscan.io.images import read_tile
from hemoscan.models.loading import DEFAULT_MODEL, load_model

from .evaluate.common import DEFAULT_DATA_ROOT
from .splits import C, txl_part


def reading_ratios(
    model_name: str, data_root: Path, sizes: list[float], every: int
) -> dict[float, list[float]]:
    """Per working size (px), each field's detected over labelled median red-cell diameter."""
    model = load_model(model_name)
    predictor = Predictor(model)
    ratios: dict[float, list[float]] = {s: [] for s in sizes}
    for item in txl_part(data_root / "txl-pbc", "val")[::every]:
        if (item.boxes[:, 4] == C["rbc"]).sum() < MIN_RBC:
            continue
        image = read_tile(item.path)
        for size in sizes:
            (found,) = predictor.predict_scaled([image], [(size / item.rbc_diameter, "given")])
            reading = measure(found.detections, model.config.rbc_diameter_px)
            if reading is not None and reading.source == "auto-rbc":
                ratios[size].append(reading.cell_px / item.rbc_diameter)
    return ratios


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=DEFAULT_MODEL)
    p.add_argument("--sizes", type=float, nargs="+", default=[26, 32, 40, 48, 56, 64])
    p.add_argument("--every", type=int, default=4, help="every n-th val field (4: 72 of 288)")
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    args = p.parse_args()
    ratios = reading_ratios(args.model, args.data_root, args.sizes, args.every)
    print(f"model {args.model}; TXL-PBC val, every {args.every}th field; "
          "detected / labelled median red-cell diameter")  # fmt: skip
    for size, values in ratios.items():
        if not values:
            print(f"{size:5.0f} px: no field with {MIN_RBC} detected red cells")
            continue
        q1, median, q3 = statistics.quantiles(values, n=4) if len(values) > 1 else values * 3
        print(
            f"{size:5.0f} px: {len(values):3d} fields, median {median:.3f} (IQR {q1:.3f}-{q3:.3f})"
        )


if __name__ == "__main__":
    main()
