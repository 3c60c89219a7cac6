"""Ship a trained model folder: copy it into ``weights/NAME``, add its ONNX export beside the
weights (what ``--backend auto`` runs on the CPU) and record the sha256 of its weights, of its
``config.json`` and of the export in ``weights/manifest.json``.

    python training/publish_model.py runs/lite0-v2/best --name hemoscan-lite0-v2

The folder must hold ``config.json`` and ``model.safetensors`` (as ``save_model_folder``
writes them); ``MODEL_CARD.md`` is written by hand next to the weights afterwards. The model
and its export are loaded once from their new place to prove the manifest entry right.

``--int8 CALIBRATION`` also writes the model's int8 export into ``weights/NAME/int8`` (what
``--precision int8`` runs), calibrated on the tiles in CALIBRATION (made by
``python -m hemoscan_training.calibration_tiles``), and pins it as ``int8_onnx_sha256``. Without
a source, it adds the int8 export to an already shipped model::

    python -m hemoscan_training.calibration_tiles runs/calibration
    python training/publish_model.py --name hemoscan-lite0-v3 --int8 runs/calibration
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from hemoscan.model_export.onnx import export_onnx
from hemoscan.models.loading import (
    CONFIG_FILE,
    WEIGHTS_FILE,
    load_model,
    manifest_entry,
    weights_dir,
)
from hemoscan.models.onnx_format import INT8_FOLDER, load_onnx_model, manifest_fields

#: Calibration images an int8 export of a shipped model may use (the calibration set's 49).
INT8_CALIBRATION_IMAGES = 64


def publish(source: Path | None, name: str, int8_calibration: Path | None = None) -> Path:
    target = weights_dir() / name
    if source is not None:
        target.mkdir(parents=True, exist_ok=True)
        for file in (CONFIG_FILE, WEIGHTS_FILE):
            shutil.copy2(source / file, target / file)
        if (source / "thresholds.json").is_file():  # how `hemoscan evaluate --tune-thresholds` tuned
            shutil.copy2(source / "thresholds.json", target / "thresholds.json")
        export_onnx(load_model(str(target)), target)
        shutil.rmtree(target / INT8_FOLDER, ignore_errors=True)  # an int8 export of other weights
    if int8_calibration is not None:
        int8 = target / INT8_FOLDER
        export_onnx(load_model(str(target)), int8, quantize="int8",
                    calibration=[str(int8_calibration)],
                    calibration_images=INT8_CALIBRATION_IMAGES)  # fmt: skip
        (int8 / "MODEL_CARD.md").unlink(missing_ok=True)  # the card beside the weights covers it
    manifest_path = weights_dir() / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest[name] = {**manifest_entry(target), **manifest_fields(target)}
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    load_model(name)
    load_onnx_model(name, threads=1, precision="fp32")
    if int8_calibration is not None:
        load_onnx_model(name, threads=1, precision="int8")
    return target


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("source", type=Path, nargs="?",
                   help="trained model folder (none: add --int8 to the shipped model NAME)")  # fmt: skip
    p.add_argument("--name", required=True, help="name of the shipped model (weights/NAME)")
    p.add_argument("--int8", type=Path, metavar="CALIBRATION",
                   help="also write the int8 export, calibrated on the tiles in this folder")  # fmt: skip
    args = p.parse_args()
    if args.source is None and args.int8 is None:
        p.error("give a source folder, --int8 CALIBRATION, or both")
    print(f"published {publish(args.source, args.name, args.int8)}")


if __name__ == "__main__":
    main()
