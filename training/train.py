"""Train a hemoscan detector from a config file: ``hemoscan train`` and its script form.

    hemoscan train --config training/configs/hemoscan-lite0-v2.yaml --out runs/NAME
    python -m hemoscan_training.train --config FILE --out runs/NAME [--set optim.lr=1e-3 ...]
        [--epochs N] [--fraction F] [--seed N] [--deterministic] [--resume] [--quiet]

``--resume`` continues ``OUT`` from its ``last.pt`` (the config is then read from
``OUT/resolved.yaml`` when ``--config`` is left out). Exit status: 0 finished (all epochs,
early stop or time budget), 1 aborted on non-finite losses, 2 unusable config or data.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

EXIT_OK, EXIT_ABORTED, EXIT_USAGE = 0, 1, 2


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
):  # type: ignore[no-untyped-def]
    """Load the config (see :func:`~hemoscan_training.config.load_config`) and train;
    returns the :class:`~hemoscan_training.engine.RunResult`. Raises ``ConfigError`` (and
    other :class:`~hemoscan.errors.HemoscanError`) on unusable input."""
    from .config import ConfigError, load_config
    from .engine import train

    if config is None and not (resume and out is not None):
        raise ConfigError("--config: give a config file (or --resume --out RUN to continue a run)")
    cfg = load_config(config, overrides, epochs=epochs, fraction=fraction, out=out, seed=seed,
                      deterministic=deterministic, resume=resume, quiet=quiet)  # fmt: skip
    return train(cfg)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", type=Path, help="YAML training config")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. optim.lr=1e-3 (repeatable)")  # fmt: skip
    p.add_argument("--epochs", type=int)
    p.add_argument("--fraction", type=float, help="scale steps per epoch and dataset sizes (0-1]")
    p.add_argument("--out", type=Path, help="run folder")
    p.add_argument("--seed", type=int)
    p.add_argument("--deterministic", action="store_true", default=None)
    p.add_argument("--resume", action="store_true", default=None, help="continue OUT from last.pt")
    p.add_argument("--quiet", action="store_true", default=None, help="no progress bar")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from hemoscan.errors import HemoscanError

    a = parse_args(argv)
    try:
        result = run_training(a.config, a.overrides, epochs=a.epochs, fraction=a.fraction, out=a.out,
                              seed=a.seed, deterministic=a.deterministic, resume=a.resume, quiet=a.quiet)  # fmt: skip
    except HemoscanError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    return EXIT_ABORTED if result.status == "aborted_nonfinite" else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
