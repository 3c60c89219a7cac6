"""Distillation: the teacher term, a student that shares its teacher's frozen backbone, and
starting a student of another architecture from parts of its teacher."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from hemoscan_training.config import DEFAULT_CLASSES, ConfigError, load_config
from hemoscan_training.distill import Distiller, distillation_loss
from hemoscan_training.network import build_model
from hemoscan_training.trainer import train

from hemoscan.models import ModelConfig, create_model, load_model, save_model_folder
from tests.training.synthetic import tiny_config, write_config, write_yolo_set


def _outputs(seed: int, shape=(2, 8, 6, 6)) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    b, _, h, w = shape
    return (torch.randn(shape, generator=g) * 3, torch.randn((b, 2, h, w), generator=g),
            torch.rand((b, 2, h, w), generator=g))  # fmt: skip


def test_the_teacher_term_is_zero_only_where_student_and_teacher_agree() -> None:
    teacher = _outputs(0)
    assert distillation_loss(teacher, teacher).item() == pytest.approx(0.0, abs=1e-5)
    other = distillation_loss(_outputs(1), teacher)
    assert other.item() > 0.1
    heat = teacher[0].clone().requires_grad_(True)
    moved = (heat + 1.0, *teacher[1:])
    loss = distillation_loss(moved, teacher)
    loss.backward()
    assert loss.item() > 0 and heat.grad is not None and heat.grad.abs().sum() > 0


def test_sizes_count_only_where_the_teacher_sees_a_cell() -> None:
    heat, size, off = _outputs(0)
    teacher = (torch.full_like(heat, -30.0), size, off)  # no cell anywhere
    wrong_size = (teacher[0], size + 5.0, off)
    assert distillation_loss(wrong_size, teacher).item() == pytest.approx(0.0, abs=1e-4)
    teacher = (torch.full_like(heat, 30.0), size, off)  # cells everywhere
    wrong_size = (teacher[0], size + 5.0, off)
    assert distillation_loss(wrong_size, teacher).item() == pytest.approx(5.0, rel=1e-3)  # mean L1


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("teacher") / "teacher"
    save_model_folder(create_model("centernet_mnv3s", len(DEFAULT_CLASSES)), ModelConfig(
        name="teacher", version="1", architecture="centernet_mnv3s", classes=DEFAULT_CLASSES,
        rbc_diameter_px=14.0), folder)  # fmt: skip
    return folder


def _student_config(tmp_path: Path, teacher: Path, **model) -> dict:
    yolo = write_yolo_set(tmp_path / "yolo")
    return tiny_config(
        yolo, schedule={"epochs": 1, "steps_per_epoch": 2},
        model={"weights": str(teacher), "weights_prefixes": ["backbone"], "freeze": ["backbone"],
               **model},
        distill={"teacher": str(teacher), "weight": 1.0, "gt_weight": 0.5},
    )  # fmt: skip


def test_a_student_on_its_teachers_frozen_backbone_learns_in_one_shared_pass(
    tmp_path: Path, teacher_dir: Path
) -> None:
    cfg = load_config(write_config(tmp_path / "c.yaml", _student_config(tmp_path, teacher_dir)),
                      out=tmp_path / "run")  # fmt: skip
    student, frozen, summary = build_model(cfg)
    assert "tensors (backbone) from" in summary
    distiller = Distiller(cfg, student, frozen, torch.device("cpu"))
    assert distiller.shared_backbone
    student.eval()
    x = torch.randn(2, 3, 64, 64)
    shared_student, shared_teacher = distiller.outputs(student, x)
    with torch.no_grad():
        alone = student(x), distiller.teacher(x)
    for got, want in zip((*shared_student, *shared_teacher), (*alone[0], *alone[1])):
        torch.testing.assert_close(got, want)

    logs: list[str] = []
    result = train(cfg, log=logs.append)
    assert result.status == "completed"
    assert any("one shared backbone pass" in line for line in logs)
    with open(tmp_path / "run" / "results.csv", newline="") as f:
        (row,) = list(csv.DictReader(f))
    assert float(row["distill"]) > 0
    trained, teacher = load_model(str(result.best_model)).module, load_model(str(teacher_dir)).module
    for k, v in teacher.backbone.state_dict().items():
        assert torch.equal(trained.backbone.state_dict()[k], v), k  # frozen: still the teacher's
    heads = [k for k in teacher.state_dict() if k.startswith("heatmap.")]
    assert any(not torch.equal(trained.state_dict()[k], teacher.state_dict()[k]) for k in heads)


def test_a_student_of_another_architecture_copies_only_the_named_parts(tmp_path: Path) -> None:
    torch.manual_seed(2)
    lite0 = tmp_path / "lite0"
    save_model_folder(create_model("centernet_lite0", len(DEFAULT_CLASSES)), ModelConfig(
        name="lite0", version="1", architecture="centernet_lite0", classes=DEFAULT_CLASSES), lite0)  # fmt: skip
    raw = _student_config(tmp_path, lite0, architecture="centernet_lite0_separable",
                          weights_prefixes=["backbone", "lateral"])  # fmt: skip
    cfg = load_config(write_config(tmp_path / "c.yaml", raw), out=tmp_path / "run")
    student, frozen, _ = build_model(cfg)
    source = load_model(str(lite0)).module.state_dict()
    for k, v in student.state_dict().items():
        if k.startswith(("backbone.", "lateral.")):
            assert torch.equal(v, source[k]), k
    assert Distiller(cfg, student, frozen, torch.device("cpu")).shared_backbone

    raw["model"]["weights_prefixes"] = []
    cfg = load_config(write_config(tmp_path / "c.yaml", raw), out=tmp_path / "run2")
    with pytest.raises(ConfigError, match="model.weights_prefixes"):
        build_model(cfg)


def test_a_teacher_with_other_classes_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "t5"
    save_model_folder(create_model("centernet_mnv3s", 5), ModelConfig(
        name="t5", version="1", architecture="centernet_mnv3s", classes=DEFAULT_CLASSES[:5]), folder)  # fmt: skip
    raw = _student_config(tmp_path, folder)
    raw["model"].update(weights=None, weights_prefixes=[], freeze=[])
    cfg = load_config(write_config(tmp_path / "c.yaml", raw), out=tmp_path / "run")
    with pytest.raises(ConfigError, match="distill.teacher: .*classes"):
        train(cfg)


def test_weights_prefixes_need_weights(tmp_path: Path) -> None:
    raw = tiny_config(write_yolo_set(tmp_path / "yolo"), model={"weights_prefixes": ["backbone"]})
    with pytest.raises(ConfigError, match="model.weights_prefixes"):
        load_config(write_config(tmp_path / "c.yaml", raw), out=tmp_path / "run")
