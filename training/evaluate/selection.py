"""Which suites ``--data`` names: the shared suites and any annotated set."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Literal

import numpy as np
import yaml

from hemoscan.annotations import AnnotatedImage, DatasetSpec, read_dataset
from hemoscan.annotations.spec import FORMATS
from hemoscan.inference.backends import AnyModel
from hemoscan.inference.scale import AUTO
from hemoscan.io.images import read_tile

from ..composed import DEV_SEED, VAL_SEED
from .common import (
    COMPOSED_N,
    DEFAULT_DATA_ROOT,
    REPORT_SUITES,
    SHARED_SUITES,
    EvaluationError,
)
from .suites import (
    SCANNER_RBC_PX,
    EvalField,
    Suite,
    bal_suite,
    composed_suite,
    segpc_suite,
    txl_suite,
)


def _oracle_rbc(records: Sequence[AnnotatedImage]) -> list[float | None]:
    out: list[float | None] = []
    for r in records:
        b = r.boxes[[lab == "rbc" for lab in r.labels]]
        out.append(
            float(np.median((b[:, 2] - b[:, 0] + b[:, 3] - b[:, 1]) / 2)) if len(b) else None
        )
    return out


def annotated_suite(
    spec: DatasetSpec,
    model: AnyModel,
    scale: float | Literal["oracle", "auto"] = 1.0,
    limit: int | None = None,
    data: Literal["real", "composed"] = "real",
) -> Suite:
    """Any annotated set readable by :func:`hemoscan.annotations.read_dataset`, at a fixed
    ``scale``, ``"oracle"`` (each image's median labelled red cell brought to the model's
    ``rbc_diameter_px``) or ``"auto"`` (each image's own estimate; the oracle, for images
    with labelled red cells, kept as the reference)."""
    records = read_dataset(spec)[:limit]
    if not records:
        raise EvaluationError(f"dataset {spec.name}: no images")
    rbc_px = model.config.rbc_diameter_px
    rbc = _oracle_rbc(records)
    oracles = [rbc_px / d if d else None for d in rbc]
    scales: list[float | Literal["auto"]]
    if scale == "oracle":
        known = [d for d in rbc if d]
        if not known:
            raise EvaluationError(
                f"dataset {spec.name}: --scale oracle needs labelled red cells; set --scale"
            )
        fallback = float(np.median(known))
        scales = [rbc_px / (d or fallback) for d in rbc]
        note = f"oracle: each image rescaled so its median labelled red cell is {rbc_px:g} px"
    elif scale == AUTO:
        scales = [AUTO] * len(records)
        note = "auto: each image's own estimate, as `hemoscan scan` does"
    else:
        scales = [float(scale)] * len(records)
        note = f"fixed {float(scale):g}"

    def loader(rec: AnnotatedImage) -> Callable[[], tuple[np.ndarray, AnnotatedImage]]:
        def load() -> tuple[np.ndarray, AnnotatedImage]:
            return read_tile(rec.image_path), rec

        return load

    base = spec.root if spec.root.is_dir() else spec.root.parent
    fields = []
    for rec, s, oracle in zip(records, scales, oracles):
        try:
            sample = rec.image_path.parent.relative_to(base).as_posix()
        except ValueError:
            sample = rec.image_path.parent.name
        fields.append(EvalField(rec.image_path.name, sample or ".", s, loader(rec), oracle))
    return Suite(
        name=spec.name,
        data=data,
        description=f"{spec.format} dataset {spec.name}"
        + (" (COMPOSED)" if data == "composed" else ""),
        scale_note=note,
        fields=fields,
    )


def parse_class_map(text: str | None) -> dict[str, str]:
    """``"0=nucleated,1=rbc"`` -> ``{"0": "nucleated", "1": "rbc"}``."""
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        if "=" not in item:
            raise EvaluationError(f"--classes entry {item!r} is not SOURCE=CLASS")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def build_suites(
    data: Sequence[str],
    model: AnyModel,
    *,
    data_root: Path = DEFAULT_DATA_ROOT,
    limit: int | None = None,
    class_map: Mapping[str, str] | None = None,
    split: str | None = None,
    scale: float | Literal["oracle", "auto"] | None = None,
    composed_n: int = COMPOSED_N,
    composed: bool = False,
) -> list[Suite]:
    """Suites for ``--data`` values: ``shared:NAME[,NAME...]`` (``shared:default`` is every
    one of :data:`REPORT_SUITES`), ``FORMAT:PATH`` or ``spec:FILE`` (at ``scale``, default 1)."""
    suites: list[Suite] = []
    n_composed = composed_n if limit is None else min(composed_n, limit)
    for text in data:
        kind, sep, rest = text.partition(":")
        if not sep or not rest:
            raise EvaluationError(
                f"--data {text!r}: use shared:NAMES, FORMAT:PATH ({', '.join(FORMATS)}) or spec:FILE"
            )
        if kind == "shared":
            names = [n.strip() for n in rest.split(",") if n.strip()]
            if names == ["default"]:
                names = list(REPORT_SUITES)
            for name in names:
                if name == "txl-val":
                    suites.append(txl_suite(model, data_root, "val", limit))
                elif name == "txl-val-native":
                    suites.append(txl_suite(model, data_root, "val", limit, native=True))
                elif name == "txl-val-scanner":
                    suites.append(txl_suite(model, data_root, "val", limit, native=True,
                                            resampled_rbc_px=SCANNER_RBC_PX))  # fmt: skip
                elif name == "txl-dev":
                    suites.append(txl_suite(model, data_root, "dev", limit))
                elif name == "segpc-heldout":
                    suites.append(segpc_suite(model, data_root, limit))
                elif name == "segpc-heldout-native":
                    suites.append(segpc_suite(model, data_root, limit, native=True))
                elif name == "bal-heldout":
                    suites.append(bal_suite(model, data_root, limit))
                elif name == "composed-val":
                    suites.append(composed_suite(data_root, "val", VAL_SEED, n_composed))
                elif name == "composed-val-real-host":
                    suites.append(composed_suite(data_root, "val", VAL_SEED, n_composed,
                                                 hosts="real"))  # fmt: skip
                elif name == "composed-val-procedural-host":
                    suites.append(composed_suite(data_root, "val", VAL_SEED, n_composed,
                                                 hosts="procedural"))  # fmt: skip
                elif name == "composed-dev":
                    suites.append(composed_suite(data_root, "train", DEV_SEED, n_composed))
                else:
                    raise EvaluationError(
                        f"unknown suite {name!r}; known: {', '.join(SHARED_SUITES)} or default"
                    )
            continue
        if kind == "spec":
            path = Path(rest)
            try:
                text_ = path.read_text(encoding="utf-8")
            except OSError as e:
                raise EvaluationError(f"{path}: cannot read the dataset spec: {e}") from None
            if path.suffix.lower() in (".yaml", ".yml"):
                raw = yaml.safe_load(text_)
            else:
                try:
                    raw = json.loads(text_)
                except json.JSONDecodeError as e:
                    raise EvaluationError(f"{path}: not valid JSON: {e}") from None
            spec = DatasetSpec.from_dict(raw, base_dir=path.parent)
        elif kind in FORMATS:
            spec = DatasetSpec(
                format=kind, root=Path(rest), class_map=dict(class_map or {}), split=split
            )
        else:
            raise EvaluationError(
                f"--data {text!r}: unknown kind {kind!r}; use shared, spec or one of {', '.join(FORMATS)}"
            )
        suites.append(
            annotated_suite(
                spec,
                model,
                1.0 if scale is None else scale,
                limit,
                "composed" if composed else "real",
            )
        )
    names = [s.name for s in suites]
    if len(set(names)) != len(names):
        raise EvaluationError(f"a suite is listed twice: {names}")
    return suites
