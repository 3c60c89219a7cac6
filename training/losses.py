"""CenterNet training loss: penalty-reduced focal loss on the heatmaps, L1 on sizes and offsets.

Negatives can be switched off per image and class (``neg_weight``: a class whose absence is
not labelled in that image) and per pixel (``neg_mask``: ignore regions), so partially
labelled sets never teach the model that an unlabelled cell is background.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def focal_loss(
    logits: torch.Tensor,
    gt: torch.Tensor,
    neg_weight: torch.Tensor,
    alpha: float = 2.0,
    beta: float = 4.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """CenterNet's penalty-reduced focal loss over the batch, normalised by the positives.

    ``logits``, ``gt``: float32 ``[B, K, h, w]`` (``gt`` is the Gaussian-splatted heatmap,
    exactly 1 at object centres). ``neg_weight``: float32 ``[B, K]`` (per image and class) or
    a tensor broadcastable to ``[B, K, h, w]`` (per pixel): the weight of the negative term;
    positives are never weighted. Returns ``(loss, number of positives)``, scalars.
    """
    if neg_weight.dim() == 2:
        neg_weight = neg_weight[:, :, None, None]
    pos = gt.eq(1).float()
    p = torch.sigmoid(logits)
    pos_loss = F.logsigmoid(logits) * (1 - p) ** alpha * pos
    neg_loss = F.logsigmoid(-logits) * p**alpha * (1 - gt) ** beta * (1 - pos) * neg_weight
    n_pos = pos.sum()
    return -(pos_loss.sum() + neg_loss.sum()) / n_pos.clamp(min=1.0), n_pos


def detection_loss(
    outputs: tuple[torch.Tensor, ...], batch: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Total and per-head losses (scalars) for one batch.

    ``outputs``: the model's ``(heatmap_logits [B, K, h, w], log_size [B, 2, h, w],
    offset [B, 2, h, w])``. ``batch``: ``heatmap [B, K, h, w]``, ``log_size`` and ``offset``
    ``[B, 2, h, w]``, ``reg_mask [B, 1, h, w]`` (1 at object centres), ``neg_weight [B, K]``
    and optionally ``neg_mask [B, 1, h, w]`` (0 inside ignore regions), all float32.
    Without ``neg_mask`` the computation is exactly the per-class one.
    """
    heat, log_size, offset = outputs
    neg = batch["neg_weight"]
    if "neg_mask" in batch:
        neg = neg[:, :, None, None] * batch["neg_mask"]
    hm, _ = focal_loss(heat, batch["heatmap"], neg)
    mask = batch["reg_mask"]
    denom = (mask.sum() * 2).clamp(min=1.0)
    size = (F.l1_loss(log_size, batch["log_size"], reduction="none") * mask).sum() / denom
    off = (F.l1_loss(offset, batch["offset"], reduction="none") * mask).sum() / denom
    return {"loss": hm + size + off, "heatmap": hm, "size": size, "offset": off}
