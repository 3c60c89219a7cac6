"""Ship a trained model folder: copy it into ``weights/NAME``, add its ONNX export beside the
weights (what ``--backend auto`` runs on the CPU) and record the sha256 of its weights, of its
``config.json`` and of the export in ``weights/manifest.json``.

    python training/publish_model.py runs/lite0-v2/best --name hemoscan-lite0-v2

The folder must hold ``config.json`` and ``model.safetensors`` (as ``save_model_folder``
writes them); ``MODEL_CARD.md`` is written by hand next to the weights afterwards. The model
and its export are loaded once from their new place to prove the manifest entry right.
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
from hemoscan.models.onnx_format import load_onnx_model, manifest_fields


def publish(source: Path, name: str) -> Path:
    target = weights_dir() / name
    target.mkdir(parents=True, exist_ok=True)
    for file in (CONFIG_FILE, WEIGHTS_FILE):
        shutil.copy2(source / file, target / file)
    if (source / "thresholds.json").is_file():  # how `hemoscan evaluate --tune-thresholds` tuned
        shutil.copy2(source / "thresholds.json", target / "thresholds.json")
    export_onnx(load_model(str(target)), target)
    manifest_path = weights_dir() / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest[name] = {**manifest_entry(target), **manifest_fields(target)}
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    load_model(name)
    load_onnx_model(name, threads=1)
    return target


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("source", type=Path, help="trained model folder")
    p.add_argument("--name", required=True, help="name of the shipped model (weights/NAME)")
    args = p.parse_args()
    print(f"published {publish(args.source, args.name)}")


if __name__ == "__main__":
    main()
