"""Training killed with SIGKILL resumes where its checkpoint left it, and ends as an uninterrupted run does."""

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from bin_perception.cli import main as cli_main
from bin_perception.sim.dataset import simulate_bag

# 24 frames in batches of 4: 6 steps an epoch, 30 in all, a checkpoint every few steps.
CONFIG = {
    "model": {"method": "per_seed", "input_size_px": 64, "model_points": 256, "observed_points": 128},
    "train": {"batch_size": 4, "epochs": 5, "seed": 0, "threads": 1, "checkpoint_every_s": 0.3},
}
STEPS = 30


def _command(tmp_path: Path, run: str, *extra: str) -> list[str]:
    return [
        sys.executable, "-m", "bin_perception.cli", "train", "--bag", str(tmp_path / "bolt_n2.mcap"), "--instances", "2",
        "--config", str(tmp_path / "tiny.yaml"), "--out", str(tmp_path / run), *extra,
    ]


def _finish(command: list[str], env: dict) -> str:
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def _log(run: Path) -> list[dict]:
    with open(run / "loss_log.csv") as log:
        return list(csv.DictReader(log))


@pytest.mark.slow
def test_a_run_killed_mid_training_resumes_with_its_step_count_and_whole_loss_history(tmp_path):
    # With BPGrad, our own optimiser: the checkpoint carries whichever optimiser's state_dict, and BPGrad's (its
    # bound on f, its velocity) is the one torch does not test. test_optim also round-trips it on its own.
    simulate_bag("bolt", 2, 24, seed=2, out=tmp_path / "bolt_n2.mcap", progress=False)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump({**CONFIG, "train": {**CONFIG["train"], "optimizer": "bpgrad"}}))
    env = {**os.environ, "BIN_PERCEPTION_CACHE": str(tmp_path / "cache")}
    _finish(_command(tmp_path, "whole"), env)  # also builds the frame cache both runs below read

    killed = tmp_path / "killed"
    process = subprocess.Popen(_command(tmp_path, "killed"), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        # Kill it after its third checkpoint or so, well before its last.
        while time.monotonic() < deadline:
            try:
                if json.loads((killed / "checkpoint.json").read_text())["step"] >= 8:
                    break
            except (FileNotFoundError, json.JSONDecodeError, KeyError):
                pass
            assert process.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
    finally:
        process.kill()
        process.wait()
    at_kill = json.loads((killed / "checkpoint.json").read_text())
    assert 8 <= at_kill["step"] < STEPS

    output = _finish(_command(tmp_path, "killed", "--resume"), env)
    assert f"resuming at step {at_kill['step']} (epoch {at_kill['epoch']})" in output
    metadata = json.loads((killed / "checkpoint.json").read_text())
    assert metadata["step"] == STEPS and metadata["epoch"] == 5
    log = _log(killed)
    assert [int(row["step"]) for row in log] == list(range(1, STEPS + 1))
    # The data order, each frame's sample and the optimiser state continued: the losses are those of a run never killed.
    whole = _log(tmp_path / "whole")
    assert [float(row["loss"]) for row in log] == pytest.approx([float(row["loss"]) for row in whole], rel=1e-5)
    assert [row["epoch"] for row in log] == [row["epoch"] for row in whole]


def test_resume_refuses_a_checkpoint_of_another_model(tmp_path, nut_bag, capsys, monkeypatch):
    monkeypatch.setenv("BIN_PERCEPTION_CACHE", str(tmp_path / "cache"))
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**CONFIG, "train": {**CONFIG["train"], "epochs": 1, "batch_size": 3}}))
    args = ["train", "--bag", str(nut_bag), "--instances", "3", "--config", str(config), "--out", str(tmp_path / "run")]
    assert cli_main(args) == 0
    config.write_text(yaml.safe_dump({**CONFIG, "model": {**CONFIG["model"], "model_points": 128}}))
    capsys.readouterr()
    assert cli_main([*args, "--resume"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress bars
    assert error.startswith("bin-perception train: error: checkpoint ") and error.endswith("its model config differs from this one in model_points")
