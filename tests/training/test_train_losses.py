"""The CenterNet loss: unchanged for composed crops, negatives off in ignore regions and for
classes an image does not supervise."""

from __future__ import annotations

import torch
from hemoscan_training.losses import detection_loss, focal_loss
from torch.nn import functional as F

B, K, G = 2, 3, 8


def _reference_focal(logits, gt, neg_weight, alpha=2.0, beta=4.0):  # type: ignore[no-untyped-def]
    """The loss of the former train_detector.py, verbatim."""
    pos = gt.eq(1).float()
    p = torch.sigmoid(logits)
    pos_loss = F.logsigmoid(logits) * (1 - p) ** alpha * pos
    neg_loss = (
        F.logsigmoid(-logits)
        * p**alpha
        * (1 - gt) ** beta
        * (1 - pos)
        * neg_weight[:, :, None, None]
    )
    n_pos = pos.sum()
    return -(pos_loss.sum() + neg_loss.sum()) / n_pos.clamp(min=1.0), n_pos


def _batch(seed: int = 0) -> tuple[tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    heat = torch.zeros(B, K, G, G)
    heat[0, 0, 2, 2] = heat[1, 2, 5, 6] = 1.0
    heat[0, 0, 2, 3] = heat[0, 0, 3, 2] = 0.6
    reg = torch.zeros(B, 1, G, G)
    reg[0, 0, 2, 2] = reg[1, 0, 5, 6] = 1.0
    batch = {"heatmap": heat, "reg_mask": reg, "neg_weight": torch.tensor([[1.0, 0.0, 1.0], [1.0, 1.0, 1.0]]),
             "log_size": torch.rand(B, 2, G, G, generator=g), "offset": torch.rand(B, 2, G, G, generator=g)}  # fmt: skip
    outputs = (torch.randn(B, K, G, G, generator=g), torch.randn(B, 2, G, G, generator=g),
               torch.rand(B, 2, G, G, generator=g))  # fmt: skip
    return outputs, batch


def test_per_class_weights_give_the_former_loss_bitwise() -> None:
    outputs, batch = _batch()
    ref, n_ref = _reference_focal(outputs[0], batch["heatmap"], batch["neg_weight"])
    new, n_new = focal_loss(outputs[0], batch["heatmap"], batch["neg_weight"])
    assert torch.equal(ref, new) and torch.equal(n_ref, n_new)
    assert torch.equal(detection_loss(outputs, batch)["heatmap"], ref)
    ones = detection_loss(outputs, {**batch, "neg_mask": torch.ones(B, 1, G, G)})
    assert all(torch.equal(ones[k], v) for k, v in detection_loss(outputs, batch).items())


def _heat_grad(outputs, batch) -> torch.Tensor:  # type: ignore[no-untyped-def]
    logits = outputs[0].clone().requires_grad_(True)
    detection_loss((logits, *outputs[1:]), batch)["loss"].backward()
    assert logits.grad is not None
    return logits.grad


def test_ignore_regions_and_unsupervised_classes_get_no_negative_loss() -> None:
    outputs, batch = _batch()
    mask = torch.ones(B, 1, G, G)
    mask[1, 0, 0:4, 0:4] = 0.0  # an ignore region in image 1
    grad = _heat_grad(outputs, {**batch, "neg_mask": mask})
    assert torch.all(grad[1, :, 0:4, 0:4] == 0)  # nothing learnt there, for any class
    assert torch.all(grad[1, :, 4:, 4:].abs().sum((1, 2)) > 0)
    assert torch.all(grad[0, 1] == 0)  # class 1 is not supervised in image 0, and has no positive
    assert grad[0, 0].abs().sum() > 0 and grad[0, 2].abs().sum() > 0
    # a positive inside an ignore region is still taught
    mask[1, 0, 5:7, 5:7] = 0.0
    grad = _heat_grad(outputs, {**batch, "neg_mask": mask})
    assert grad[1, 2, 5, 6] != 0 and torch.all(grad[1, 0:2, 5:7, 5:7] == 0)
    # the ignored area does not change the loss whatever the logits there
    worse = outputs[0].clone()
    worse[1, :, 0:4, 0:4] = 10.0
    a = detection_loss(outputs, {**batch, "neg_mask": mask})["loss"]
    b = detection_loss((worse, *outputs[1:]), {**batch, "neg_mask": mask})["loss"]
    c = detection_loss((worse, *outputs[1:]), batch)["loss"]
    assert torch.equal(a, b) and c > a
