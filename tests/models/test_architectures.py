"""Every registered architecture keeps the CenterNet output contract; the separable and lean
variants keep their dense twin's backbone and FPN laterals, so a student can start from them;
the box-on-heatmap variant keeps its whole heatmap path, scores included; the shallow variant is
it without some residual blocks, the rest named as in it."""

from __future__ import annotations

import pytest
import torch

from hemoscan.models import create_model, list_models

STRIDE_8 = ("centernet_lite0", "centernet_lite0_separable", "centernet_lite0_separable_regression",
            "centernet_lite0_lean", "centernet_lite0_box_on_heatmap", "centernet_lite0_shallow",
            "centernet_mnv3s")  # fmt: skip


@pytest.mark.parametrize("name", STRIDE_8)
def test_outputs_follow_the_contract(name: str) -> None:
    assert name in list_models()
    torch.manual_seed(0)
    model = create_model(name, num_classes=8).eval()
    x = torch.randn(1, 3, 96, 128)
    with torch.no_grad():
        heat, log_size, offset = model(x)
        again = model.forward_head(model.backbone(x))
    assert model.stride == 8
    assert heat.shape == (1, 8, 12, 16) and log_size.shape == offset.shape == (1, 2, 12, 16)
    assert float(offset.min()) >= 0 and float(offset.max()) <= 1
    for got, want in zip(again, (heat, log_size, offset)):
        assert torch.equal(got, want)


@pytest.mark.parametrize(("name", "kept"), [
    ("centernet_lite0_separable", ("backbone.", "lateral.")),
    ("centernet_lite0_separable_regression", ("backbone.", "lateral.", "smooth.", "heatmap.")),
    ("centernet_lite0_lean", ("backbone.", "lateral.")),
    ("centernet_lite0_box_on_heatmap", ("backbone.", "lateral.", "smooth.", "heatmap.")),
])  # fmt: skip
def test_separable_variants_keep_the_dense_parts_of_centernet_lite0(name: str, kept) -> None:
    dense = create_model("centernet_lite0", num_classes=8).state_dict()
    separable = create_model(name, num_classes=8).state_dict()
    shared = [k for k in dense if k.startswith(kept)]
    assert shared and all(separable[k].shape == dense[k].shape for k in shared)
    assert not [k for k in separable if k.startswith(kept) and k not in dense]


def test_the_fully_separable_neck_and_heads_are_a_fraction_of_the_dense_ones() -> None:
    dense = create_model("centernet_lite0", num_classes=8).state_dict()
    separable = create_model("centernet_lite0_separable", num_classes=8).state_dict()

    def neck_and_heads(state: dict[str, torch.Tensor]) -> int:
        return sum(v.numel() for k, v in state.items()
                   if k.startswith(("smooth.", "heatmap.", "size.", "offset.")) and v.is_floating_point())  # fmt: skip

    assert neck_and_heads(separable) < neck_and_heads(dense) / 4


def test_the_shared_box_head_predicts_sizes_then_offsets() -> None:
    """``box``'s first two channels are the log sizes, the last two the offsets' logits."""
    torch.manual_seed(0)
    model = create_model("centernet_lite0_lean", num_classes=8).eval()
    seen: list[torch.Tensor] = []
    model.box.register_forward_hook(lambda _m, _i, out: seen.append(out))
    with torch.no_grad():
        _, log_size, offset = model(torch.randn(1, 3, 64, 64))
    (box,) = seen
    assert box.shape == (1, 4, 8, 8)
    assert torch.equal(log_size, box[:, :2])
    assert torch.equal(offset, torch.sigmoid(box[:, 2:]))


def test_a_shared_box_head_cannot_be_separable() -> None:
    from hemoscan.models.centernet import CenterNet

    backbone = create_model("centernet_lite0", num_classes=8).backbone
    with pytest.raises(ValueError, match="shared_box"):
        CenterNet(backbone, 8, separable=("size",), shared_box=True)


def test_box_on_heatmap_scores_are_its_dense_twins_with_the_same_heatmap_path() -> None:
    """With centernet_lite0's backbone, FPN, smoothing and heatmap head copied in, the heatmap
    logits are that model's exactly: only sizes and offsets come from the new box layers."""
    torch.manual_seed(0)
    dense = create_model("centernet_lite0", num_classes=8).eval()
    student = create_model("centernet_lite0_box_on_heatmap", num_classes=8).eval()
    theirs = dense.state_dict()
    student.load_state_dict({k: theirs.get(k, v) for k, v in student.state_dict().items()})
    seen: list[torch.Tensor] = []
    student.box.register_forward_hook(lambda _m, _i, out: seen.append(out))
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        heat, log_size, offset = student(x)
        assert torch.equal(heat, dense(x)[0])
    (box,) = seen
    assert box.shape == (1, 4, 8, 12)
    assert torch.equal(log_size, box[:, :2]) and torch.equal(offset, torch.sigmoid(box[:, 2:]))
    assert not hasattr(student, "size") and not hasattr(student, "offset")


def test_box_heads_are_placed_one_way() -> None:
    from hemoscan.models.centernet import CenterNet

    backbone = create_model("centernet_lite0", num_classes=8).backbone
    with pytest.raises(ValueError, match="two ways"):
        CenterNet(backbone, 8, shared_box=True, box_on_heatmap=True)
    with pytest.raises(ValueError, match="box_on_heatmap"):
        CenterNet(backbone, 8, separable=("offset",), box_on_heatmap=True)


def test_the_shallow_variant_is_box_on_heatmap_without_the_dropped_blocks() -> None:
    from hemoscan.models.registry import SHALLOW_DROPPED_BLOCKS

    torch.manual_seed(0)
    full = create_model("centernet_lite0_box_on_heatmap", num_classes=8).eval()
    shallow = create_model("centernet_lite0_shallow", num_classes=8).eval()
    theirs, mine = full.state_dict(), shallow.state_dict()
    dropped = {k for k in theirs if k not in mine}
    assert dropped and all(theirs[k].shape == mine[k].shape for k in mine)
    assert {int(k.split(".")[2]) for k in dropped} == set(SHALLOW_DROPPED_BLOCKS)
    # with those blocks made identities in the full network, the two compute the same
    shallow.load_state_dict({k: theirs[k] for k in mine})
    for i in SHALLOW_DROPPED_BLOCKS:
        full.backbone._blocks[i] = torch.nn.Identity()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        for got, want in zip(shallow(x), full(x)):
            assert torch.equal(got, want)


def test_only_residual_blocks_can_be_dropped() -> None:
    from hemoscan.models.backbones import EfficientNetLite0Backbone

    with pytest.raises(ValueError, match=r"not \[1, 11\]"):
        EfficientNetLite0Backbone(dropped=(1, 2, 11))
