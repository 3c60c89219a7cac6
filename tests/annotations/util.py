"""Helpers for the annotation-reader tests: tiny images and files written into tmp_path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np


def blank(path: Path, width: int = 64, height: int = 48) -> Path:
    """A plain image of the given size (format from the suffix)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), np.full((height, width, 3), 200, np.uint8))
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def write_json(path: Path, obj: Any) -> Path:
    return write_text(path, json.dumps(obj))


def by_name(records: list) -> dict[str, Any]:
    return {r.image_path.name: r for r in records}
