"""What a dataset is: :class:`DatasetSpec`, one entry of a training config's dataset list.

Example (JSON or YAML in a training config; ``root`` relative to the config file's folder)::

    {"format": "yolo", "root": "../shared/datasets/txl-pbc", "split": "train",
     "class_map": {"0": "nucleated", "1": "rbc", "2": "platelet"},
     "supervised": "all"}
    {"format": "masks", "root": "../shared/datasets/segpc-marrow",
     "class_map": {"mask": "nucleated"}, "supervised": [],
     "options": {"min_area": 200, "max_size": 130}}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from hemoscan.annotations.record import ANNOTATION_CLASSES, DROP, IGNORE, AnnotationError

Format = Literal["yolo", "coco", "voc", "qupath", "masks"]
FORMATS: tuple[str, ...] = ("yolo", "coco", "voc", "qupath", "masks")
ALL = "all"


@dataclass(frozen=True)
class DatasetSpec:
    """One annotated dataset to read.

    ``format``: ``yolo``, ``coco``, ``voc``, ``qupath`` or ``masks``.
    ``root``: the dataset folder (for ``coco`` it may be the JSON file itself).
    ``images`` / ``labels``: the image folder and the annotation folder (``coco``: the JSON
    file; ``masks``: the mask folder), relative to ``root`` unless absolute. When left out each
    reader looks for its format's usual layout (e.g. ``images/<split>`` and ``labels/<split>``
    for YOLO); ``split`` is appended only to those defaults, never to explicit paths.
    ``class_map``: source class (name or id, as a string) -> hemoscan class, ``"ignore"`` (the
    object's box becomes an ignore region) or ``"drop"`` (the object is discarded). A source
    class missing from the map is kept if its name is already a hemoscan class, else it is
    an error. Keys are looked up exactly.
    ``supervised``: classes whose absence is meaningful (negatives taught). ``"all"`` (the
    default) means every hemoscan class that ``class_map`` maps to, plus every hemoscan class
    found in the data under its own name; ``[]`` makes every class positives-only (a
    partially labelled set). Classes that never occur may be listed too (e.g. ``macrophage``
    for peripheral-blood fields known to hold none).
    ``options``: format-specific settings, see each reader's ``*Options`` dataclass.
    ``name``: a label for messages (defaults to ``root``).
    """

    format: str
    root: Path
    class_map: Mapping[str, str] = field(default_factory=dict)
    supervised: Sequence[str] | str = ALL
    images: Path | None = None
    labels: Path | None = None
    split: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    name: str = ""

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "root", Path(self.root))
        set_(self, "name", self.name or str(self.root))
        if self.format not in FORMATS:
            raise AnnotationError(
                f"dataset {self.name}: format {self.format!r} is not one of {FORMATS}"
            )
        for key in ("images", "labels"):
            value = getattr(self, key)
            if value is not None:
                set_(self, key, Path(value))
        if not isinstance(self.class_map, Mapping):
            raise AnnotationError(f"dataset {self.name}: class_map must be a mapping")
        cmap = {str(k): str(v) for k, v in self.class_map.items()}
        allowed = (*ANNOTATION_CLASSES, IGNORE, DROP)
        bad = {k: v for k, v in cmap.items() if v not in allowed}
        if bad:
            raise AnnotationError(
                f"dataset {self.name}: class_map targets {bad} are not hemoscan classes; "
                f"use one of {allowed}"
            )
        set_(self, "class_map", cmap)
        if isinstance(self.supervised, str):
            if self.supervised != ALL:
                raise AnnotationError(
                    f"dataset {self.name}: supervised must be 'all' or a list of classes, "
                    f"got {self.supervised!r}"
                )
        else:
            sup = tuple(str(c) for c in self.supervised)
            unknown = sorted(set(sup) - set(ANNOTATION_CLASSES))
            if unknown:
                raise AnnotationError(
                    f"dataset {self.name}: supervised classes {unknown} are not hemoscan classes"
                )
            set_(self, "supervised", sup)
        if self.split is not None and not isinstance(self.split, str):
            raise AnnotationError(f"dataset {self.name}: split must be a string")
        if not isinstance(self.options, Mapping):
            raise AnnotationError(f"dataset {self.name}: options must be a mapping")
        set_(self, "options", dict(self.options))

    # ------------------------------------------------------------------ dict form
    @classmethod
    def from_dict(cls, d: Mapping[str, Any], base_dir: Path | None = None) -> DatasetSpec:
        """Build from a config entry; a relative ``root`` is taken relative to ``base_dir``.

        Unknown keys are an error (they are usually typos), so a caller that keeps its own
        keys in the same entry (sampling weights, ...) must remove them first.
        """
        if not isinstance(d, Mapping):
            raise AnnotationError(f"dataset spec must be a mapping, got {type(d).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise AnnotationError(
                f"dataset spec: unknown keys {unknown}; known keys are {sorted(known)}"
            )
        for key in ("format", "root"):
            if key not in d:
                raise AnnotationError(f"dataset spec: missing {key!r} in {dict(d)}")
        args = dict(d)
        root = Path(str(args["root"])).expanduser()
        if base_dir is not None and not root.is_absolute():
            root = Path(base_dir) / root
        args["root"] = root
        args["class_map"] = args.get("class_map") or {}
        args["options"] = args.get("options") or {}
        if args.get("supervised") is None:
            args["supervised"] = ALL
        try:
            return cls(**args)
        except TypeError as e:
            raise AnnotationError(f"dataset spec {dict(d)}: {e}") from None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": self.format,
            "root": str(self.root),
            "class_map": dict(self.class_map),
            "supervised": self.supervised
            if isinstance(self.supervised, str)
            else list(self.supervised),
        }
        for key in ("images", "labels", "split"):
            if getattr(self, key) is not None:
                d[key] = str(getattr(self, key))
        if self.options:
            d["options"] = dict(self.options)
        if self.name != str(self.root):
            d["name"] = self.name
        return d

    # ------------------------------------------------------------------ helpers for readers
    def path(self, p: Path) -> Path:
        """``p`` relative to ``root`` unless absolute."""
        return p if p.is_absolute() else self.root / p

    def map_class(self, keys: Iterable[str | int | None], where: str) -> str:
        """The hemoscan class, ``"ignore"`` or ``"drop"`` for a source class.

        ``keys`` are the source's names for the class in lookup order (e.g. YOLO id then name);
        the first found in ``class_map`` wins, else the first that is a hemoscan class name or
        ``ignore`` (a source class named ``ignore`` marks ignore regions, as
        ``hemoscan review --export`` writes them).
        """
        candidates = [str(k) for k in keys if k is not None]
        for key in candidates:
            if key in self.class_map:
                return self.class_map[key]
        for key in candidates:
            if key in ANNOTATION_CLASSES or key == IGNORE:
                return key
        shown = " / ".join(repr(k) for k in candidates)
        raise AnnotationError(
            f"{where}: source class {shown} is not in the class_map of dataset {self.name}; "
            f"map it to a hemoscan class, 'ignore' or 'drop' (known: {sorted(self.class_map)})"
        )

    def resolve_supervised(
        self, found: Iterable[str], declared: Iterable[str] | None = None
    ) -> frozenset[str]:
        """The supervised set: explicit, else what the data ``declared`` (a file's own statement,
        e.g. a COCO file's ``supervised``), else for ``"all"`` the mapped plus the found classes."""
        if not isinstance(self.supervised, str):
            return frozenset(self.supervised)
        if declared is not None:
            return frozenset(declared)
        mapped = {v for v in self.class_map.values() if v in ANNOTATION_CLASSES}
        return frozenset(mapped | set(found))
