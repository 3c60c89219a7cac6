"""Knowledge distillation: a teacher model's outputs as soft targets for a student.

The teacher runs in eval mode without gradients on the student's own batch; the student
learns the teacher's heatmaps (Bernoulli KL divergence per pixel and class, which is 0 where
they agree, so the empty background costs nothing once matched) and its sizes and offsets
where the teacher sees a cell (L1 weighted by the teacher's highest class probability).
A student that keeps its teacher's backbone, frozen, shares one backbone pass with it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .config import ConfigError, TrainConfig

Outputs = tuple[torch.Tensor, torch.Tensor, torch.Tensor]


def load_teacher(cfg: TrainConfig, device: torch.device) -> nn.Module:
    """The frozen teacher network of ``cfg.distill`` on ``device`` (its classes must be the
    student's, in the same order)."""
    from hemoscan.errors import HemoscanError
    from hemoscan.models import load_model

    name = cfg.distill.teacher
    assert name is not None
    try:
        teacher = load_model(name)
    except HemoscanError as e:
        raise ConfigError(f"distill.teacher: {e}") from None
    if tuple(teacher.config.classes) != tuple(cfg.model.classes):
        raise ConfigError(f"distill.teacher: {name}'s classes {list(teacher.config.classes)} "
                          f"differ from model.classes {list(cfg.model.classes)}")  # fmt: skip
    module = teacher.module.to(device).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


class Distiller:
    """The teacher of a run and how it is run beside the student."""

    def __init__(
        self, cfg: TrainConfig, student: nn.Module, frozen: list[nn.Module], device: torch.device
    ) -> None:
        self.teacher = load_teacher(cfg, device)
        self.shared_backbone = _same_frozen_backbone(student, self.teacher, frozen)

    def outputs(self, student: nn.Module, images: torch.Tensor) -> tuple[Outputs, Outputs]:
        """``(student outputs, teacher outputs)`` for ``images: float32 [B, 3, H, W]``."""
        if self.shared_backbone:
            with torch.no_grad():
                features = self.teacher.backbone(images)
                taught = self.teacher.forward_head(features)
            return student.forward_head(features), taught
        with torch.no_grad():
            taught = self.teacher(images)
        return student(images), taught


def _same_frozen_backbone(
    student: nn.Module, teacher: nn.Module, frozen: list[nn.Module]
) -> bool:
    """Whether the student's backbone is frozen and equal to the teacher's (then one pass
    serves both: frozen modules run in eval mode, like the teacher)."""
    s_bb, t_bb = getattr(student, "backbone", None), getattr(teacher, "backbone", None)
    split = all(hasattr(m, "forward_head") for m in (student, teacher))
    if s_bb is None or t_bb is None or not split or not any(m is s_bb for m in frozen):
        return False
    mine, theirs = s_bb.state_dict(), t_bb.state_dict()
    return mine.keys() == theirs.keys() and all(
        mine[k].shape == theirs[k].shape and torch.equal(mine[k].cpu(), theirs[k].cpu())
        for k in mine
    )


def distillation_loss(student: Outputs, teacher: Outputs) -> torch.Tensor:
    """The teacher term, a scalar: heatmap KL + size L1 + offset L1.

    Both arguments are ``(heatmap_logits [B, K, h, w], log_size [B, 2, h, w],
    offset [B, 2, h, w])`` (float32, the CenterNet output contract). The KL sum is divided by
    the teacher's total heatmap probability of each class (a count of its cells up to the
    Gaussian's spread) and summed over classes.
    """
    s_heat, s_size, s_off = student
    t_heat, t_size, t_off = teacher
    t_p = torch.sigmoid(t_heat)
    kl = F.binary_cross_entropy_with_logits(s_heat, t_p, reduction="none") - (
        F.binary_cross_entropy_with_logits(t_heat, t_p, reduction="none")
    )
    # per class, so that rare small cells (platelets) weigh as much as the many red cells
    heat = (kl.sum(dim=(0, 2, 3)) / t_p.sum(dim=(0, 2, 3)).clamp(min=1.0)).sum()
    where = t_p.amax(dim=1, keepdim=True)
    denom = (where.sum() * 2).clamp(min=1.0)
    size = ((s_size - t_size).abs() * where).sum() / denom
    off = ((s_off - t_off).abs() * where).sum() / denom
    return heat + size + off
