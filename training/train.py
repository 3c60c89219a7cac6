"""Train a hemoscan detector from a config file: what ``hemoscan train`` runs.

    hemoscan train --config training/configs/hemoscan-lite0-v3.yaml --out runs/NAME
        [--set optim.lr=1e-3 ...] [--epochs N] [--fraction F] [--seed N] [--deterministic]
        [--resume] [--quiet]

``--resume`` continues ``OUT`` from its ``last.pt`` (the config is then read from
``OUT/resolved.yaml`` when ``--config`` is left out). The command's exit status: 0 finished
(all epochs, early stop or time budget), 1 aborted on non-finite losses, 2 unusable config or
data.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .config import ConfigError, load_config
from .trainer import RunResult, train


def run_training(
    config: Path | None,
    overrides: Sequence[str] = (),
    *,
    epochs: int | None = None,
    fraction: float | None = None,
    out: Path | None = None,
    seed: int | None = None,
    deterministic: bool | None = None,
    resume: bool | None = None,
    quiet: bool | None = None,
) -> RunResult:
    """Load the config (see :func:`~hemoscan_training.config.load_config`; ``None``: a flag
    not given) and train. Raises ``ConfigError`` (and other
    :class:`~hemoscan.errors.HemoscanError`) on unusable input."""
    if config is None and not (resume and out is not None):
        raise ConfigError("--config: give a config file (or --resume --out RUN to continue a run)")
    cfg = load_config(config, overrides, epochs=epochs, fraction=fraction, out=out, seed=seed,
                      deterministic=deterministic, resume=resume, quiet=quiet)  # fmt: skip
    return train(cfg)
