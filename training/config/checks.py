"""Checks of a built config: value ranges, cross-section consistency, dataset entries.

:func:`validate` returns the config with absolute paths, or raises :class:`ConfigError`
naming the dotted key and what is wrong.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .coerce import ConfigError, coerce
from .sections import DATASET_EXTRA_KEYS, DEFAULT_CLASSES, IMAGENET_MEAN, IMAGENET_STD, TrainConfig


def absolute(path: Path | None) -> Path | None:
    return None if path is None else Path(os.path.normpath(Path(path).expanduser().absolute()))


def dataset_entries(entries: tuple[dict[str, Any], ...], key: str) -> tuple[dict[str, Any], ...]:
    """Check every dataset entry (DatasetSpec keys plus DATASET_EXTRA_KEYS); absolute roots."""
    from hemoscan.annotations import AnnotationError, DatasetSpec

    out = []
    for i, entry in enumerate(entries):
        where = f"{key}[{i}]"
        if not isinstance(entry, Mapping):
            raise ConfigError(f"{where}: expected a mapping (format, root, class_map, ...)")
        entry = dict(entry)
        spec_part = {k: v for k, v in entry.items() if k not in DATASET_EXTRA_KEYS}
        try:
            spec = DatasetSpec.from_dict(spec_part)
        except AnnotationError as e:
            raise ConfigError(f"{where}: {e}") from None
        if "rbc_diameter_px" in entry and "scale" in entry:
            raise ConfigError(f"{where}: give rbc_diameter_px or scale, not both")
        for extra in DATASET_EXTRA_KEYS:
            if extra in entry:
                value = coerce(entry[extra], float, f"{where}.{extra}")
                if value <= 0:
                    raise ConfigError(f"{where}.{extra}: must be > 0, got {value}")
                entry[extra] = value
        if not spec.root.exists():
            raise ConfigError(f"{where}.root: {absolute(spec.root)} does not exist")
        entry["root"] = str(absolute(spec.root))
        out.append(entry)
    return tuple(out)


def validate(config: TrainConfig) -> TrainConfig:
    """Check values and cross-section consistency; return the config with absolute paths."""
    from hemoscan.errors import ModelConfigError
    from hemoscan.models import ModelConfig, list_models

    m, d, o, s, r = config.model, config.data, config.optim, config.schedule, config.run

    def need(ok: bool, key: str, what: str) -> None:
        if not ok:
            raise ConfigError(f"{key}: {what}")

    need(m.architecture in list_models(), "model.architecture",
         f"unknown architecture {m.architecture!r}; known: {', '.join(list_models())}")  # fmt: skip
    need(len(m.classes) > 0 and len(set(m.classes)) == len(m.classes), "model.classes",
         "must be a non-empty list without repeats")  # fmt: skip
    try:
        ModelConfig(name=m.name, version=m.version, architecture=m.architecture,
                    classes=m.classes, tile_size=m.tile_size, overlap=m.overlap)  # fmt: skip
    except ModelConfigError as e:
        raise ConfigError(f"model: {e}") from None
    need(m.rbc_diameter_px > 0, "model.rbc_diameter_px", "must be > 0")
    need(all(v > 0 for v in m.std), "model.std", "must be > 0")
    need(0 < m.default_threshold < 1, "model.default_threshold", "must be in (0, 1)")
    bad = sorted(set(m.score_thresholds) - set(m.classes))
    need(not bad, "model.score_thresholds", f"classes {bad} are not in model.classes")
    need(all(0 < v < 1 for v in m.score_thresholds.values()), "model.score_thresholds",
         "thresholds must be in (0, 1)")  # fmt: skip

    need(d.crop >= 32 and d.crop % 32 == 0, "data.crop", f"must be a multiple of 32, got {d.crop}")
    need(d.batch_size >= 1, "data.batch_size", "must be >= 1")
    need(d.val_images >= 0, "data.val_images", "must be >= 0")
    need(d.val_composed >= 0, "data.val_composed", "must be >= 0")
    need(0 <= d.val_fraction < 1, "data.val_fraction", "must be in [0, 1)")
    for name in ("p_real_host", "p_texture_host", "p_lobed", "p_engulf", "p_hard_negative",
                 "p_inclusions", "p_bal", "p_bal_engulf"):  # fmt: skip
        need(0 <= getattr(d.composer, name) <= 1, f"data.composer.{name}",
             "must be a probability in [0, 1]")  # fmt: skip
    need(0 <= d.composer.host_hue <= 90, "data.composer.host_hue", "must be in [0, 90]")
    lo, hi = d.composer.rbc_px
    need((lo, hi) == (0, 0) or 8 <= lo <= hi <= 200, "data.composer.rbc_px",
         f"must be [0, 0] (v2's ranges) or 8 <= low <= high <= 200, got {[lo, hi]}")  # fmt: skip
    a = d.augment
    for name in ("p_hed", "p_hsv", "p_brightness", "p_blur", "p_jpeg", "p_noise"):
        need(0 <= getattr(a, name) <= 1, f"data.augment.{name}", "must be a probability in [0, 1]")
    need(
        0 < a.scale[0] <= a.scale[1],
        "data.augment.scale",
        "must be [low, high] with 0 < low <= high",
    )
    need(1 <= a.jpeg_quality[0] <= a.jpeg_quality[1] <= 100, "data.augment.jpeg_quality",
         "must be [low, high] within 1..100")  # fmt: skip
    need(0 <= a.hed < 1, "data.augment.hed", "must be in [0, 1)")
    data_root = absolute(d.data_root)
    train, val = d.train, d.val
    if d.source == "composed":
        need(data_root is not None, "data.data_root",
             "the composed recipe needs the folder holding txl-pbc, segpc-marrow and giemsa-macrophages")  # fmt: skip
        assert data_root is not None
        needed = ("txl-pbc", "segpc-marrow", "giemsa-macrophages") + (
            ("bal-macrophages",) if d.composer.p_bal else ()
        )
        missing = [n for n in needed if not (data_root / n).is_dir()]
        need(not missing, "data.data_root", f"{data_root} lacks {', '.join(missing)}")
        need(m.classes == DEFAULT_CLASSES, "model.classes",
             f"the composed recipe trains exactly {list(DEFAULT_CLASSES)}")  # fmt: skip
        need(tuple(m.mean) == IMAGENET_MEAN and tuple(m.std) == IMAGENET_STD, "model.mean",
             "the composed recipe normalises with ImageNet's mean and std")  # fmt: skip
        need(
            not train and not val,
            "data.train",
            "datasets are read only with data.source: annotated",
        )
    else:
        need(
            len(train) > 0, "data.train", "list at least one dataset (format, root, class_map, ...)"
        )
        train, val = dataset_entries(train, "data.train"), dataset_entries(val, "data.val")
        need(
            not (val and d.val_fraction),
            "data.val_fraction",
            "give data.val or data.val_fraction, not both",
        )

    need(o.lr > 0, "optim.lr", "must be > 0")
    need(o.weight_decay >= 0, "optim.weight_decay", "must be >= 0")
    need(o.grad_clip >= 0, "optim.grad_clip", "must be >= 0 (0: off)")
    need(o.max_nonfinite_steps >= 1, "optim.max_nonfinite_steps", "must be >= 1")

    need(s.epochs >= 1, "schedule.epochs", "must be >= 1")
    need(s.steps_per_epoch >= 1, "schedule.steps_per_epoch", "must be >= 1")
    need(s.warmup_epochs >= 0, "schedule.warmup_epochs", "must be >= 0")
    need(0 <= s.final_lr_fraction <= 1, "schedule.final_lr_fraction", "must be in [0, 1]")
    for key, names in (
        ("schedule.eval_classes", s.eval_classes),
        ("schedule.best_metric", s.best_metric),
    ):
        bad = sorted(set(names) - set(m.classes))
        need(not bad, key, f"classes {bad} are not in model.classes")
    need(len(s.best_metric) > 0, "schedule.best_metric", "name at least one class")
    need(s.patience >= 0, "schedule.patience", "must be >= 0 (0: no early stopping)")
    need(s.min_delta >= 0, "schedule.min_delta", "must be >= 0")
    need(s.time_budget_min >= 0, "schedule.time_budget_min", "must be >= 0 (0: off)")

    t = config.distill
    need(t.weight >= 0 and t.gt_weight >= 0, "distill.weight",
         "distill.weight and distill.gt_weight must be >= 0")  # fmt: skip
    need(t.teacher is None or t.weight + t.gt_weight > 0, "distill.weight",
         "distill.weight and distill.gt_weight cannot both be 0")  # fmt: skip
    need(not m.weights_prefixes or m.weights is not None, "model.weights_prefixes",
         "name the model to copy them from in model.weights")  # fmt: skip

    need(r.out is not None, "run.out", "set the run folder (--out DIR)")
    need(0 < r.fraction <= 1, "run.fraction", f"must be in (0, 1], got {r.fraction}")
    need(r.threads >= 1, "run.threads", "must be >= 1")
    need(r.workers >= 0, "run.workers", "must be >= 0")
    need(r.log_every >= 1, "run.log_every", "must be >= 1")
    need(r.device == "cpu" or r.device.startswith("cuda"), "run.device", "must be cpu or cuda[:N]")

    return dataclasses.replace(
        config,
        data=dataclasses.replace(d, data_root=data_root, train=train, val=val),
        run=dataclasses.replace(r, out=absolute(r.out)),
    )
