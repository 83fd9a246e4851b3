"""`bin-perception export`: the object model as PLY, and a TorchScript pose network that gives the checkpoint's poses."""

import json

import numpy as np
import pytest
import torch
import trimesh

from bin_perception.cli import main as cli_main
from bin_perception.config import Config, ModelConfig, TrainConfig
from bin_perception.io.bag import BagReader
from bin_perception.learning.trainer import train
from bin_perception.model import load_checkpoint


@pytest.mark.parametrize("method", ["whole_image", "per_seed"])
def test_the_exported_network_gives_the_checkpoints_poses(method, nut_bag, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BIN_PERCEPTION_CACHE", str(tmp_path / "cache"))
    model = ModelConfig(method=method, input_size_px=64, model_points=256, observed_points=128)
    train([str(nut_bag)], 3, Config(model=model, train=TrainConfig(batch_size=3, epochs=1)), tmp_path / "run")
    checkpoint = tmp_path / "run" / "checkpoint.pt"

    assert cli_main(["export", "--checkpoint", str(checkpoint), "--out", str(tmp_path / "export")]) == 0
    assert "pose network (TorchScript)" in capsys.readouterr().out
    manifest = json.loads((tmp_path / "export" / "export.json").read_text())
    assert manifest["method"] == method and manifest["problem"] is None

    perception, _, _ = load_checkpoint(checkpoint)
    perception.eval()
    cloud = trimesh.load(tmp_path / "export" / manifest["model_ply"])
    np.testing.assert_allclose(cloud.vertices, perception.model_points_m(), atol=1e-6)
    network = torch.jit.load(str(tmp_path / "export" / manifest["pose_network"]))
    for frame in list(BagReader(nut_bag))[:3]:
        observation = perception.observe(frame)
        poses = perception.predict(frame, observation).poses
        with torch.no_grad():
            if method == "per_seed":
                inputs = observation.crops[:, None], observation.centres, observation.angles
                rotations, translations = network(*map(torch.from_numpy, inputs))
            else:
                rotations, translations = (t[0] for t in network(torch.from_numpy(observation.image)[None, None]))
        np.testing.assert_allclose(rotations.numpy(), poses[:, :3, :3], atol=1e-5)
        np.testing.assert_allclose(translations.numpy(), poses[:, :3, 3], atol=1e-6)  # metres: a micrometre


def test_export_of_a_missing_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    assert cli_main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--out", str(tmp_path / "export")]) == 2
    assert capsys.readouterr().err == f"bin-perception export: error: checkpoint {tmp_path / 'none.pt'}: no such file\n"
