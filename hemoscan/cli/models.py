"""``hemoscan models``: the shipped models (version, sha256, classes, licence, size, exports,
folder)."""

from __future__ import annotations

import typer

from hemoscan.cli.common import fail


def models_command() -> None:
    """List the shipped models and the architectures.

    Each shipped model is verified against the manifest.
    """
    from hemoscan.errors import HemoscanError
    from hemoscan.models import list_models
    from hemoscan.models.loading import DEFAULT_MODEL, describe_shipped_models

    try:
        shipped = describe_shipped_models()
    except HemoscanError as e:
        fail(str(e))
    for model in shipped:
        config = model.config
        typer.echo(f"{model.name}{'  (default)' if model.name == DEFAULT_MODEL else ''}")
        rows = (
            ("version", config.version),
            ("sha256", model.sha256),
            ("classes", ", ".join(config.classes)),
            ("licence", config.license or "not stated"),
            ("size", f"{model.size_bytes / 1e6:.1f} MB"),
            ("exports", ", ".join(model.exports) or "none (PyTorch only)"),
            ("folder", str(model.folder)),
        )
        for key, value in rows:
            typer.echo(f"  {key:<8} {value}")
    typer.echo(f"architectures: {', '.join(list_models())}")
