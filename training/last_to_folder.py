"""Write a run's last checkpoint as a model folder, as ``hemoscan train`` writes ``RUN/best``
for the epoch its dev metric chose: for a run whose last epoch is the one to keep.

    python -m hemoscan_training.last_to_folder runs/lite0-v4 runs/v4-last \\
        --set 'model.nms_ios={nucleated: 0.5, macrophage: 0.5, hemophagocyte: 0.5, rbc: 0.7, platelet: 0.7}'

The model's settings come from the run's ``resolved.yaml`` with ``--set`` overrides applied
(``model.*`` keys: thresholds, ``nms_ios``, name, version); the weights from ``last.pt``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .checkpoint import CHECKPOINT_FILE, load_checkpoint
from .config import RESOLVED_FILE, load_config
from .network import model_config


def last_to_folder(run: Path, out: Path, overrides: list[str] | tuple[str, ...] = ()) -> Path:
    """Save ``run/last.pt``'s weights with ``run``'s model settings as the model folder
    ``out``; returns it."""
    from hemoscan.models import create_model, save_model_folder

    cfg = load_config(run / RESOLVED_FILE, overrides)
    model = create_model(cfg.model.architecture, num_classes=len(cfg.model.classes))
    model.load_state_dict(load_checkpoint(run / CHECKPOINT_FILE)["model"])
    save_model_folder(model.eval(), model_config(cfg), out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path, help="the training run's folder (holding last.pt)")
    parser.add_argument("out", type=Path, help="the model folder to write")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a config value, as hemoscan train --set")  # fmt: skip
    args = parser.parse_args(argv)
    print(last_to_folder(args.run, args.out, args.set))


if __name__ == "__main__":
    main()
