"""CenterNet-style detector: class-centre heatmaps, box sizes and centre offsets at stride 8.

Output contract shared by every hemoscan architecture (and its ONNX export):
``model(x)`` with ``x: float32 [B, 3, H, W]`` (normalised RGB, H and W multiples of 32) returns
``(heatmap_logits [B, K, H/s, W/s], log_size [B, 2, H/s, W/s], offset [B, 2, H/s, W/s])`` where
``s = model.stride``, K the number of heatmap classes, ``log_size = log(w/s), log(h/s)`` and
``offset`` the sub-cell position of the centre in [0, 1] cell units (x, y).
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F


def _conv_bn_relu(c_in: int, c_out: int, kernel: int = 3) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def _head(c_in: int, c_mid: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_mid, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(c_mid, c_out, 1)
    )


def _separable_bn_relu(c_in: int, c_out: int, kernel: int = 5) -> nn.Sequential:
    """Depthwise ``kernel`` x ``kernel`` then pointwise convolution, each with batch norm and
    ReLU: about a sixth of a 3x3 convolution's cost at 64 channels, with a wider view."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_in, kernel, padding=kernel // 2, groups=c_in, bias=False),
        nn.BatchNorm2d(c_in),
        nn.ReLU(inplace=True),
        nn.Conv2d(c_in, c_out, 1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def _separable_head(c_in: int, c_mid: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(_separable_bn_relu(c_in, c_mid), nn.Conv2d(c_mid, c_out, 1))


#: The stride-8 parts after the FPN's lateral connections, in the order they run.
NECK_AND_HEADS = ("smooth", "heatmap", "size", "offset")


class CenterNet(nn.Module):
    """Backbone (strides 8/16/32) -> top-down FPN fused at stride 8 -> three heads.

    ``separable``: which of :data:`NECK_AND_HEADS` are depthwise-separable 5x5 convolutions
    instead of dense 3x3 ones (on EfficientNet-Lite0 at 512 px, the dense smoothing costs ~4%
    of the network's time and each dense head as much; a separable one about a sixth of that).
    Students distilled with separable heads have so far lost box precision on small cells
    (``training/configs/experiment-*.yaml`` record what was measured).
    ``shared_box``: one dense head (``box``) predicts both sizes and offsets, for half the
    regression cost with a dense layer kept for box precision.
    ``box_on_heatmap``: one thin box head instead of the two dense regression heads: its own
    3x3 features (``box_features``, a quarter of the channels) beside the heatmap head's hidden
    ones, read by two pointwise layers (``box``); on EfficientNet-Lite0 at 512 px the network
    takes ~8% less time. The heatmap path is untouched, so a student that copies and freezes its
    teacher's keeps the teacher's scores exactly.
    """

    stride = 8

    def __init__(
        self,
        backbone: nn.Module,
        num_classes: int,
        fpn_channels: int = 64,
        separable: tuple[str, ...] = (),
        shared_box: bool = False,
        box_on_heatmap: bool = False,
    ) -> None:
        super().__init__()
        if shared_box and box_on_heatmap:
            raise ValueError("shared_box and box_on_heatmap are two ways to place the box head")
        unknown = set(separable) - set(NECK_AND_HEADS)
        if unknown:
            raise ValueError(f"separable: unknown parts {sorted(unknown)} (of {NECK_AND_HEADS})")
        c = fpn_channels
        self.backbone = backbone
        self.lateral = nn.ModuleList(nn.Conv2d(ch, c, 1) for ch in backbone.out_channels)
        self.smooth = (_separable_bn_relu if "smooth" in separable else _conv_bn_relu)(c, c)
        head = {part: _separable_head if part in separable else _head for part in NECK_AND_HEADS}
        self.heatmap = head["heatmap"](c, c, num_classes)
        if shared_box:
            if {"size", "offset"} & set(separable):
                raise ValueError("shared_box: the shared box head is dense; size and offset "
                                 "cannot also be separable")  # fmt: skip
            self.box = _head(c, c, 4)
        elif box_on_heatmap:
            if {"size", "offset"} & set(separable):
                raise ValueError("box_on_heatmap: there are no size and offset heads to make "
                                 "separable")  # fmt: skip
            self.box_features = nn.Sequential(
                nn.Conv2d(c, c // 4, 3, padding=1), nn.ReLU(inplace=True)
            )
            self.box = nn.Sequential(
                nn.Conv2d(c + c // 4, c, 1), nn.ReLU(inplace=True), nn.Conv2d(c, 4, 1)
            )
        else:
            self.size = head["size"](c, c, 2)
            self.offset = head["offset"](c, c, 2)
        self.shared_box = shared_box
        self.box_on_heatmap = box_on_heatmap
        prior = 0.01
        nn.init.constant_(self.heatmap[-1].bias, -math.log((1 - prior) / prior))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.forward_head(self.backbone(x))

    def forward_head(
        self, features: list[torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The outputs from the backbone's ``[c3, c4, c5]`` maps (strides 8, 16, 32)."""
        c3, c4, c5 = features
        p = self.lateral[2](c5)
        p = self.lateral[1](c4) + F.interpolate(p, size=c4.shape[-2:], mode="nearest")
        p = self.lateral[0](c3) + F.interpolate(p, size=c3.shape[-2:], mode="nearest")
        p = self.smooth(p)
        if self.box_on_heatmap:
            hidden = self.heatmap[:-1](p)
            features = torch.cat([self.box_features(p), hidden], dim=1)
            log_size, offset = self.box(features).split(2, dim=1)
            return self.heatmap[-1](hidden), log_size, torch.sigmoid(offset)
        if self.shared_box:
            log_size, offset = self.box(p).split(2, dim=1)
        else:
            log_size, offset = self.size(p), self.offset(p)
        return self.heatmap(p), log_size, torch.sigmoid(offset)


class TinyBlobNet(nn.Module):
    """A hand-set, deterministic dark-blob detector with the CenterNet output contract.

    For tests only: it finds dark discs of about ``diameter_px`` on a light background and
    calls them ``nucleated`` (heatmap channel ``target_channel``). Its receptive field is
    small (about 28 px) so tiled and whole-image predictions agree exactly.
    """

    stride = 4

    def __init__(self, num_classes: int, target_channel: int = 2, diameter_px: float = 24.0):
        super().__init__()
        self.darkness = nn.Conv2d(3, 1, 1, bias=False)
        self.pool = nn.AvgPool2d(4)
        self.blur = nn.Conv2d(1, 1, 5, padding=2, bias=False)
        self.heatmap = nn.Conv2d(1, num_classes, 1)
        self.size = nn.Conv2d(1, 2, 1)
        self.offset = nn.Conv2d(1, 2, 1)
        with torch.no_grad():
            self.darkness.weight.fill_(-1.0 / 3.0)
            g = torch.exp(-((torch.arange(5.0) - 2) ** 2) / 2.0)
            self.blur.weight.copy_((g[:, None] * g[None, :] / g.sum() ** 2)[None, None])
            self.heatmap.weight.zero_()
            self.heatmap.weight[target_channel] = 12.0
            self.heatmap.bias.fill_(-20.0)
            self.heatmap.bias[target_channel] = -6.0
            self.size.weight.zero_()
            self.size.bias.fill_(math.log(diameter_px / self.stride))
            self.offset.weight.zero_()
            self.offset.bias.zero_()  # sigmoid(0) = 0.5: the centre of the cell

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        f = self.blur(self.pool(F.relu(self.darkness(x))))
        return self.heatmap(f), self.size(f), torch.sigmoid(self.offset(f))
