"""Training configs: the shipped recipes, overrides, paths, errors and resolved.yaml."""

from __future__ import annotations

from pathlib import Path

import pytest
from hemoscan_training.config import (
    DEFAULT_CLASSES,
    ConfigError,
    config_from_dict,
    load_config,
    read_yaml,
    resume_differences,
    write_resolved,
)

from tests.training.synthetic import tiny_config, write_config, write_yolo_set

CONFIGS = Path(__file__).resolve().parents[2] / "training" / "configs"


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    """A stand-in for ../shared/datasets: the three folders the composed recipe needs."""
    for name in ("txl-pbc", "segpc-marrow", "giemsa-macrophages"):
        (tmp_path / "shared" / name).mkdir(parents=True)
    return tmp_path / "shared"


def test_the_default_recipe_is_the_running_jobs(data_root: Path, tmp_path: Path) -> None:
    cfg = load_config(
        CONFIGS / "hemoscan-lite0-v2.yaml", [f"data.data_root={data_root}"], out=tmp_path / "run"
    )
    m, d, o, s, r = cfg.model, cfg.data, cfg.optim, cfg.schedule, cfg.run
    assert (m.architecture, m.pretrained, m.weights, m.classes) == (
        "centernet_lite0",
        True,
        None,
        DEFAULT_CLASSES,
    )
    assert m.freeze == ("backbone._conv_stem", "backbone._bn0", "backbone._blocks.0",
                        "backbone._blocks.1", "backbone._blocks.2")  # fmt: skip
    assert (m.name, m.version, m.rbc_diameter_px, m.tile_size, m.overlap) == (
        "hemoscan-lite0-v2",
        "2.0.0",
        40.0,
        1024,
        256,
    )
    assert (d.source, d.data_root, d.crop, d.batch_size, d.val_images) == (
        "composed",
        data_root,
        384,
        8,
        60,
    )
    assert (o.lr, o.weight_decay, o.grad_clip, o.max_nonfinite_steps) == (2e-3, 1e-4, 10.0, 20)
    assert (s.epochs, s.steps_per_epoch, s.warmup_epochs, s.final_lr_fraction) == (
        12,
        150,
        1.0,
        0.02,
    )
    assert (s.best_metric, s.eval_classes, s.patience) == (
        ("rbc", "nucleated"),
        ("rbc", "platelet", "nucleated"),
        0,
    )
    assert (r.seed, r.threads, r.workers, r.deterministic, r.out) == (
        0,
        2,
        1,
        False,
        tmp_path / "run",
    )
    assert (cfg.steps_per_epoch, cfg.warmup_steps, cfg.total_steps) == (150, 150, 1800)
    quick = load_config(CONFIGS / "hemoscan-lite0-v2.yaml", [f"data.data_root={data_root}"],
                        out=tmp_path / "q", fraction=0.1, epochs=2)  # fmt: skip
    assert (quick.steps_per_epoch, quick.warmup_steps, quick.total_steps) == (15, 15, 30)
    scratch = load_config(CONFIGS / "hemoscan-lite0-v2.yaml", [f"data.data_root={data_root}", "model.pretrained=false"],
                          out=tmp_path / "s")  # fmt: skip
    assert scratch.model.pretrained is False


def test_the_recipe_finds_the_shared_data_beside_the_repository() -> None:
    shared = CONFIGS.parents[2] / "shared" / "datasets"
    if not shared.is_dir():
        pytest.skip("../shared/datasets is not here")
    assert load_config(CONFIGS / "hemoscan-lite0-v2.yaml", out=Path("x")).data.data_root == shared


def test_the_finetune_example_reads_once_its_dataset_exists(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data\.train\[0\]\.root: .*my-dataset does not exist"):
        load_config(CONFIGS / "finetune-annotated.yaml", out=tmp_path / "r")
    root = write_yolo_set(tmp_path / "set")
    cfg = load_config(CONFIGS / "finetune-annotated.yaml",
                      ["data.train[0].format=yolo", f"data.train[0].root={root}", "data.train[0].split=train",
                       "data.train[0].class_map={'0': nucleated, '1': rbc}"], out=tmp_path / "r")  # fmt: skip
    assert cfg.data.source == "annotated" and cfg.model.weights == "hemoscan-lite0-v2"
    assert cfg.data.train[0]["root"] == str(root) and cfg.data.train[0]["class_map"] == {
        "0": "nucleated",
        "1": "rbc",
    }
    assert cfg.schedule.patience == 5 and cfg.data.val_fraction == 0.15


def test_overrides_are_typed_and_paths_relative_to_where_they_were_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_yolo_set(tmp_path / "cfgdir" / "set")
    cfg_dict = tiny_config(Path("set"))  # relative to the config file's folder
    path = write_config(tmp_path / "cfgdir" / "c.yaml", cfg_dict)
    monkeypatch.chdir(tmp_path)
    cfg = load_config(path, ["optim.lr=1e-3", "data.crop=96", "run.deterministic=false",
                             "schedule.best_metric=[rbc]", "data.augment.scale=[0.9, 1.1]"], out=Path("runs/a"))  # fmt: skip
    assert cfg.optim.lr == 0.001 and isinstance(cfg.optim.lr, float)  # YAML reads 1e-3 as a string
    assert (
        cfg.data.crop == 96
        and cfg.run.deterministic is False
        and cfg.schedule.best_metric == ("rbc",)
    )
    assert cfg.data.augment.scale == (0.9, 1.1)
    recipe = load_config(path, ["data.composer.p_texture_host=0.5"], out=Path("r")).data.composer
    assert recipe.p_texture_host == 0.5 and recipe.p_real_host == 0.3  # the rest: v2's recipe
    assert cfg.data.train[0]["root"] == str(tmp_path / "cfgdir" / "set")
    assert cfg.out == tmp_path / "runs" / "a"  # the working directory's, like command-line paths
    (tmp_path / "other").mkdir()
    write_yolo_set(tmp_path / "other" / "set2")
    monkeypatch.chdir(tmp_path / "other")
    moved = load_config(path, ["data.train[0].root=set2"], out=Path("r"))
    assert moved.data.train[0]["root"] == str(tmp_path / "other" / "set2")
    # a model folder named as starting weights or as teacher: relative to the config file too
    (tmp_path / "cfgdir" / "models" / "teacher").mkdir(parents=True)
    cfg_dict["model"]["weights"] = "models/teacher"
    cfg_dict["distill"] = {"teacher": "models/teacher"}
    path = write_config(tmp_path / "cfgdir" / "c.yaml", cfg_dict)
    folders = load_config(path, out=Path("r"))
    assert folders.model.weights == folders.distill.teacher == str(tmp_path / "cfgdir" / "models" / "teacher")
    cfg_dict["distill"] = {"teacher": "hemoscan-lite0-v3"}  # a shipped model's name stays a name
    path = write_config(tmp_path / "cfgdir" / "c.yaml", cfg_dict)
    assert load_config(path, out=Path("r")).distill.teacher == "hemoscan-lite0-v3"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", r"optim\.lrr: unknown key; did you mean optim\.lr\?"),
        ("optimiser.lr=1", r"optimiser: unknown key; did you mean optim\?"),
        ("optim.lr=fast", r"optim\.lr: expected a number, got 'fast'"),
        ("data.crop=100", r"data\.crop: must be a multiple of 32"),
        ("data.batch_size=2.5", r"data\.batch_size: expected an integer"),
        ("run.deterministic=maybe", r"run\.deterministic: expected true or false"),
        (
            "schedule.best_metric=[rbc, blast]",
            r"schedule\.best_metric: classes \['blast'\] are not in model\.classes",
        ),
        ("model.architecture=resnet", r"model\.architecture: unknown architecture 'resnet'"),
        ("data.source=csv", r"data\.source: must be one of \['composed', 'annotated'\]"),
        ("run.fraction=0", r"run\.fraction: must be in \(0, 1\]"),
        ("data.train[0].format=tiff", r"data\.train\[0\]: .*format 'tiff' is not one of"),
        ("data.train[0].rbc_diameter_px=-3", r"data\.train\[0\]\.rbc_diameter_px: must be > 0"),
        ("data.train[3].root=x", r"data\.train\[3\]: train has 1 entries"),
        ("optim.lr", r"expected KEY=VALUE"),
        ("data.composer.p_lobed=1.5", r"data\.composer\.p_lobed: must be a probability"),
        ("data.composer.host_hue=-5", r"data\.composer\.host_hue: must be in \[0, 90\]"),
        ("data.val_composed=-1", r"data\.val_composed: must be >= 0"),
    ],
)
def test_bad_values_name_their_key(override: str, message: str, tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", tiny_config(write_yolo_set(tmp_path / "set")))
    with pytest.raises(ConfigError, match=message):
        load_config(path, [override], out=tmp_path / "r")


def test_structural_errors(tmp_path: Path, data_root: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.yaml", out=tmp_path / "r")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping of sections"):
        load_config(tmp_path / "list.yaml", out=tmp_path / "r")
    with pytest.raises(ConfigError, match=r"data\.train: list at least one dataset"):
        load_config(None, ["data.source=annotated"], out=tmp_path / "r")
    with pytest.raises(ConfigError, match=r"run\.out: set the run folder"):
        load_config(None, [f"data.data_root={data_root}"])
    with pytest.raises(ConfigError, match=r"data\.data_root: .* lacks txl-pbc"):
        load_config(None, [f"data.data_root={tmp_path}"], out=tmp_path / "r")
    with pytest.raises(ConfigError, match=r"model\.classes: the composed recipe trains exactly"):
        load_config(
            None, [f"data.data_root={data_root}", "model.classes=[rbc]"], out=tmp_path / "r"
        )


def test_resolved_yaml_round_trips_and_resume_compares_settings(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", tiny_config(write_yolo_set(tmp_path / "set")))
    cfg = load_config(
        path, ["optim.lr=5e-4", "model.score_thresholds={rbc: 0.4}"], out=tmp_path / "r"
    )
    written = write_resolved(cfg, tmp_path / "r")
    assert written == tmp_path / "r" / "resolved.yaml"
    again = config_from_dict(read_yaml(written))
    assert again == cfg
    assert (
        load_config(None, resume=True, out=tmp_path / "r").optim.lr == 5e-4
    )  # read back for --resume
    other = load_config(path, ["optim.lr=1e-3", "model.score_thresholds={rbc: 0.4}", "run.threads=2",
                              "data.train[0].split=val"], out=tmp_path / "r")  # fmt: skip
    assert resume_differences(cfg, other) == ["data.train", "optim.lr"]  # threads may change
