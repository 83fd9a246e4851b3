import json
from pathlib import Path

import numpy as np
import pytest

from bin_perception.config import Config, ConfigError, ModelConfig, load_config
from bin_perception.model import BinPerception, load_checkpoint, save_checkpoint

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config"


def test_shipped_sim_config_is_the_defaults():
    assert load_config(CONFIG_DIR / "sim.yaml") == Config()


def test_a_bin_pose_needs_its_box():
    with pytest.raises(ValueError, match="bin_pose: the frame of a workspace box; give the workspace too"):
        Config(bin_pose=[0.0, 0.0, 0.7, 0.0, 0.0, 0.0, 1.0])
    with pytest.raises(ValueError, match="norm"):
        Config(workspace=[-0.1, -0.1, 0.0, 0.1, 0.1, 0.1], bin_pose=[0.0, 0.0, 0.7, 0.0, 0.0, 0.0, 3.0])


def test_partial_files_override_only_their_keys(tmp_path):
    path = tmp_path / "cam.yaml"
    path.write_text("camera:\n  width_px: 320\n  fx_px: 250\nworkspace: [-0.1, -0.1, 0.2, 0.1, 0.1, 0.6]\n")
    config = load_config(path)
    assert config.camera.width_px == 320 and config.camera.fx_px == 250.0
    assert config.camera.height_px == 224 and config.workspace == [-0.1, -0.1, 0.2, 0.1, 0.1, 0.6]


def test_a_file_that_extends_another_overrides_its_keys(tmp_path):
    (tmp_path / "cell.yaml").write_text("camera:\n  width_px: 848\n  fx_px: 600\nscene:\n  bin_inner_m: 0.2\n")
    (tmp_path / "pile.yaml").write_text("extends: cell.yaml\ncamera:\n  fx_px: 610\nscene:\n  drop_layer: 5\n")
    config = load_config(tmp_path / "pile.yaml")
    assert (config.camera.width_px, config.camera.fx_px, config.camera.height_px) == (848, 610.0, 224)
    assert (config.scene.bin_inner_m, config.scene.drop_layer, config.scene.drop_spread) == (0.2, 5, 1.0)
    (tmp_path / "cell.yaml").write_text("extends: pile.yaml\n")
    with pytest.raises(ConfigError, match="extends itself"):
        load_config(tmp_path / "pile.yaml")
    shipped = load_config(CONFIG_DIR / "real_pile.yaml")
    assert shipped.camera.width_px == 848 and shipped.scene.drop_layer > 1 and shipped.scene.drop_spread < 1


@pytest.mark.parametrize(
    "text, message",
    [
        ("camera:\n  widht_px: 320\n", r"camera: unknown key 'widht_px'"),
        ("extends: missing.yaml\n", r"missing.yaml: no such file"),
        ("scene:\n  drop_spread: 2\n", r"drop_spread must be 0 to 1"),
        ("camera:\n  width_px: wide\n", r"camera.width_px: expected int, got 'wide'"),
        ("noise: true\n", r"noise: expected a mapping"),
        ("camera:\n  fx_px: -3\n", r"camera: camera focal lengths"),
        ("workspace: [0, 0, 1, 0.1, 0.1, 0.5]\n", r"empty box"),
        ("- a list\n", r"top level must be a mapping"),
    ],
)
def test_bad_files_name_the_file_and_the_key(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as error:
        load_config(path)
    assert str(path) in str(error.value)


# The library's configs; the nodes' ROS 2 parameter files are checked with their launch files.
LIBRARY_CONFIGS = sorted(p for p in CONFIG_DIR.glob("*.yaml") if "ros__parameters" not in p.read_text())


def test_the_library_configs_are_found():
    assert {p.name for p in LIBRARY_CONFIGS} >= {"sim.yaml", "train_cpu.yaml", "train_gpu.yaml"}


@pytest.mark.parametrize("path", LIBRARY_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_validates(path):
    config = load_config(path)
    assert config.model.method in ("whole_image", "per_seed")


def test_the_gpu_recipe_is_the_thesis_recipe():
    config = load_config(CONFIG_DIR / "train_gpu.yaml")
    assert (config.model.method, config.model.input_size_px, config.model.model_points) == ("whole_image", 224, 1024)
    assert (config.train.optimizer, config.train.lr_model, config.train.lr_network) == ("adam", 1e-3, 1e-4)
    assert (config.train.lr_decay, config.train.lr_decay_epochs, config.train.batch_size, config.train.epochs) == (0.31, 50, 250, 250)


@pytest.mark.parametrize(("old", "new"), [("thesis", "whole_image"), ("seeded", "per_seed")])
def test_the_methods_first_names_still_load_with_a_warning(tmp_path, old, new):
    path = tmp_path / "old.yaml"
    path.write_text(f"model:\n  method: {old}\n")
    with pytest.warns(FutureWarning, match=f"'{old}' is now called '{new}'"):
        assert load_config(path).model.method == new


def test_a_checkpoint_written_under_a_methods_first_name_still_loads(tmp_path):
    perception = BinPerception(2, np.array([[-0.1, -0.1, 0.3], [0.1, 0.1, 0.6]]), ModelConfig(input_size_px=32, model_points=64))
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, perception, {}, {})
    sidecar = path.with_suffix(".json")
    metadata = json.loads(sidecar.read_text())
    metadata["model"]["method"] = "seeded"
    sidecar.write_text(json.dumps(metadata))
    with pytest.warns(FutureWarning, match="'seeded' is now called 'per_seed'"):
        loaded, _, _ = load_checkpoint(path)
    assert loaded.per_seed and loaded.config.method == "per_seed"


def test_a_cup_given_on_the_command_line_replaces_the_configs_and_is_checked():
    config = Config().with_suction_radius(0.002)
    assert config.gripper.suction_radius_m == 0.002 and config.gripper.max_flatness_m == Config().gripper.max_flatness_m
    with pytest.raises(ValueError, match="suction_radius_m must be positive"):
        Config().with_suction_radius(0.0)
