"""Typed records of what flows through a scan, each with one JSON form.

Conventions: boxes are ``x1, y1, x2, y2`` float pixels in the frame of the image they were
found in (a tile's own pixels for plain tiles), origin top-left, x to the right, y down.
No torch or numpy here: these records are plain Python so every layer can use them.
Every detection of a scan folder has a stable id (:func:`detection_id`).
"""

from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from typing import Any

#: The cell classes every hemoscan model speaks, in this order.
CELL_CLASSES: tuple[str, ...] = ("rbc", "platelet", "nucleated", "macrophage", "hemophagocyte")

#: Engulfed-cell types. ``granulocyte``, ``erythroblast`` and ``lymphocyte`` are subtypes of
#: ``nucleated``: an engulfed granulocyte counts once under ``granulocyte`` and once under
#: ``nucleated`` (the total of engulfed nucleated cells, typed or not).
ENGULFED_TYPES: tuple[str, ...] = (
    "rbc",
    "nucleated",
    "platelet",
    "granulocyte",
    "erythroblast",
    "lymphocyte",
)
#: A model class or annotation label ``engulfed_<type>`` names an engulfed cell of that type.
ENGULFED_PREFIX = "engulfed_"
NUCLEATED_SUBTYPES: tuple[str, ...] = ("granulocyte", "erythroblast", "lymphocyte")

#: Classes whose every detection is a suggestion a pathologist reviews (crops, ``hemoscan review``).
REVIEWED_CLASSES: tuple[str, ...] = ("hemophagocyte", "macrophage")

#: Classes that are nucleated cells: the denominator of "per 1000 nucleated cells".
NUCLEATED_CLASSES: tuple[str, ...] = ("nucleated", "macrophage", "hemophagocyte")


@dataclass(frozen=True)
class EngulfedCell:
    """A cell inside a hemophagocyte. ``label`` is one of :data:`ENGULFED_TYPES`."""

    label: str
    score: float
    x1: float
    y1: float
    x2: float
    y2: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> EngulfedCell:
        return cls(**{k: d[k] for k in ("label", "score", "x1", "y1", "x2", "y2")})


def count_engulfed(cells: tuple[EngulfedCell, ...]) -> dict[str, int]:
    """Counts per engulfed type; ``nucleated`` includes its typed subtypes."""
    counts = {"rbc": 0, "nucleated": 0, "platelet": 0}
    for cell in cells:
        counts[cell.label] = counts.get(cell.label, 0) + 1
        if cell.label in NUCLEATED_SUBTYPES:
            counts["nucleated"] += 1
    return counts


def describe_engulfed(counts: dict[str, int]) -> str:
    """What a hemophagocyte holds, for a reader: ``"2 rbc, 1 nucleated (1 granulocyte)"``
    (typed nucleated subtypes in brackets, as they are included in ``nucleated``)."""
    subtypes = ", ".join(f"{counts[t]} {t}" for t in NUCLEATED_SUBTYPES if counts.get(t))
    parts = [f"{counts[k]} {k}" for k in ("rbc", "nucleated", "platelet") if counts.get(k)]
    if subtypes and counts.get("nucleated"):
        parts = [f"{p} ({subtypes})" if p.endswith(" nucleated") else p for p in parts]
    return ", ".join(parts) or "no engulfed cell"


@dataclass(frozen=True)
class Detection:
    """One detected cell.

    ``engulfed_cells`` is non-empty only for hemophagocytes; ``engulfed`` derives the counts.
    """

    label: str
    score: float
    x1: float
    y1: float
    x2: float
    y2: float
    engulfed_cells: tuple[EngulfedCell, ...] = ()

    @property
    def center(self) -> tuple[float, float]:
        return (self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2

    @property
    def engulfed(self) -> dict[str, int] | None:
        if self.label != "hemophagocyte":
            return None
        return count_engulfed(self.engulfed_cells)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "label": self.label,
            "score": round(self.score, 5),
            "x1": round(self.x1, 2),
            "y1": round(self.y1, 2),
            "x2": round(self.x2, 2),
            "y2": round(self.y2, 2),
        }
        if self.label == "hemophagocyte":
            d["engulfed"] = self.engulfed
            d["engulfed_cells"] = [c.to_dict() for c in self.engulfed_cells]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Detection:
        cells = tuple(EngulfedCell.from_dict(c) for c in d.get("engulfed_cells", ()))
        return cls(
            label=d["label"],
            score=float(d["score"]),
            x1=float(d["x1"]),
            y1=float(d["y1"]),
            x2=float(d["x2"]),
            y2=float(d["y2"]),
            engulfed_cells=cells,
        )


def detection_id(sample: str, tile: str, ordinal: int) -> str:
    """The stable id of a detection: ``d`` and 16 hex digits of the blake2b digest (8 bytes) of
    ``"<sample>\\0<tile>\\0<ordinal>"`` (UTF-8, lone surrogates of non-UTF-8 file names kept),
    ``ordinal`` being the detection's place (0, 1, ...) among its tile's lines of
    ``detections.jsonl``, whose order inference fixes. It depends on nothing else, so a
    resumed, distributed or repeated scan gives every cell the same id; ids start with a
    letter so that no spreadsheet reads one as a number."""
    key = f"{sample}\0{tile}\0{ordinal}".encode("utf-8", "surrogatepass")
    return "d" + hashlib.blake2b(key, digest_size=8).hexdigest()


@dataclass(frozen=True)
class ScaleEstimate:
    """How one tile was scaled for the model (see :mod:`hemoscan.inference.scale`).

    ``scale``: the factor the tile was analysed at (input pixels x ``scale`` = model-input
    pixels); ``source``: ``auto-rbc`` / ``auto-nucleated`` (the tile's own red or nucleated
    cells), ``sample`` (its sample's consensus), ``given`` (``--scale F``), ``slide-mpp`` (a
    whole-slide image's pixel size) or ``default`` (nothing to estimate from: 1 assumed);
    ``estimate``: the tile's own estimate, ``None`` when it had too few cells; ``cell_px``:
    the median diameter (input pixels) of the ``cells`` it rests on.
    """

    scale: float
    source: str
    estimate: float | None = None
    cell_px: float | None = None
    cells: int = 0


@dataclass(frozen=True)
class TileQC:
    """Image-quality measurements of one tile and the flags they raised (see :mod:`hemoscan.qc`
    for each metric's meaning and the thresholds). ``metrics`` values are ``None`` where a
    metric could not be measured (e.g. no red cells to judge their colour)."""

    metrics: dict[str, float | None]
    flags: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"metrics": dict(self.metrics), "flags": list(self.flags)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TileQC:
        return cls(dict(d["metrics"]), tuple(d.get("flags", ())))


@dataclass(frozen=True)
class TileResult:
    """The outcome of scanning one input image (a tile): its detections, or why it failed.

    ``scale`` says how it was scaled (``None`` for a tile that failed before prediction);
    ``qc`` holds the tile's image-quality measurements; ``near_misses`` the hemophagocyte calls
    that scored just below the threshold (evidence for review, not detections), in the same
    frame as ``detections``. Neither ``qc`` nor ``near_misses`` is part of ``detections.jsonl``.
    """

    sample: str
    tile: str
    status: str  # "ok" or "error"
    width: int = 0
    height: int = 0
    detections: tuple[Detection, ...] = ()
    error: str = ""
    ms: float = 0.0
    scale: ScaleEstimate | None = None
    qc: TileQC | None = None
    near_misses: tuple[Detection, ...] = ()

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def counts(self) -> dict[str, int]:
        counts = dict.fromkeys(CELL_CLASSES, 0)
        for det in self.detections:
            counts[det.label] = counts.get(det.label, 0) + 1
        return counts


@dataclass(frozen=True)
class Provenance:
    """What produced a result: software, model identity and the settings that change counts.

    ``model_sha256`` identifies the weights, ``model_config_sha256`` the model's ``config.json``
    (classes, thresholds, scale): a shipped model's is checked against the manifest, a model
    folder's own is recorded as found (empty in summaries written before it was recorded).
    """

    hemoscan_version: str
    model_name: str
    model_version: str
    model_sha256: str
    thresholds: dict[str, float]
    settings: dict[str, Any]
    started_at: str
    finished_at: str
    model_config_sha256: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Provenance:
        return cls(**d)


@dataclass(frozen=True)
class QCFlag:
    """One image-quality finding of a sample: a stable ``code`` and a sentence for the reader."""

    code: str
    message: str


@dataclass(frozen=True)
class SampleQC:
    """Image-quality checks of one sample (see :mod:`hemoscan.qc`).

    ``tiles_assessed``: ok tiles with measurements; ``tiles_flagged[code]``: how many of them
    raised each tile flag, ``examples[code]`` a few of their names; ``measures``: the
    sample-level numbers the checks used (``nucleated_cells_assessed``,
    ``ci95_width_per_1000``, the mean of each tile metric, ...); ``thresholds``: those applied.
    """

    flags: tuple[QCFlag, ...]
    tiles_assessed: int
    tiles_flagged: dict[str, int]
    examples: dict[str, tuple[str, ...]]
    measures: dict[str, Any]
    thresholds: dict[str, Any]

    @property
    def codes(self) -> tuple[str, ...]:
        return tuple(f.code for f in self.flags)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["examples"] = {k: list(v) for k, v in self.examples.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SampleQC:
        return cls(
            flags=tuple(QCFlag(**f) for f in d["flags"]),
            tiles_assessed=d["tiles_assessed"],
            tiles_flagged=dict(d["tiles_flagged"]),
            examples={k: tuple(v) for k, v in d["examples"].items()},
            measures=dict(d["measures"]),
            thresholds=dict(d["thresholds"]),
        )


@dataclass(frozen=True)
class SampleFindings:
    """Per-sample aggregate of every tile scanned for one sample.

    ``hemophagocytes_by_engulfed[t]`` counts hemophagocytes holding at least one cell of
    type ``t``; ``engulfed_cells_total[t]`` counts the engulfed cells themselves. ``scale``
    summarises how its tiles were scaled (:func:`hemoscan.inference.scale.scale_summary`);
    ``qc``: the sample's image-quality checks (``None`` in summaries written before they
    existed).
    """

    sample: str
    counts: dict[str, int]
    nucleated_cells_assessed: int
    hemophagocytes_per_1000_nucleated: float | None
    hemophagocytes_by_engulfed: dict[str, int]
    engulfed_cells_total: dict[str, int]
    hemophagocytes_with_ge2_nucleated: int
    macrophages: int
    tiles_scanned: int
    tiles_failed: int
    provenance: Provenance | None = None
    scale: dict[str, Any] | None = None
    qc: SampleQC | None = None

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["provenance"] = self.provenance.to_dict() if self.provenance else None
        d["qc"] = self.qc.to_dict() if self.qc else None
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SampleFindings:
        d = dict(d)
        prov, qc = d.pop("provenance", None), d.pop("qc", None)
        return cls(**d, provenance=Provenance.from_dict(prov) if prov else None,
                   qc=SampleQC.from_dict(qc) if qc else None)  # fmt: skip
