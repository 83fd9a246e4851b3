"""DistributedDataParallel on the CPU: 2 gloo processes train what 1 process trains on the same global batch."""

import csv
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from bin_perception.sim.dataset import simulate_bag

# 12 frames in batches of 4: 3 steps an epoch, 2 epochs. The per-seed method, so that each frame's
# point samples (numpy) and its seeds' crops go through the sharding too. BPGrad, whose step length
# depends on f and min f: ranks that disagreed on the loss would step apart.
CONFIG = {
    "model": {"method": "per_seed", "input_size_px": 64, "model_points": 256, "observed_points": 128},
    "train": {"optimizer": "bpgrad", "batch_size": 4, "epochs": 2, "scenes": 12, "seed": 3, "threads": 1},
}

# What torchrun runs in each process (as `-m bin_perception.cli train` does), then each rank saves its own state.
RANK_SCRIPT = """
import sys
from pathlib import Path

import torch

from bin_perception.config import load_config
from bin_perception.learning.distributed import init_from_env, shutdown
from bin_perception.learning.trainer import train

bag, config, run = sys.argv[1:]
cluster = init_from_env()
result = train([bag], 2, load_config(config), run)
torch.save(result.perception.state_dict(), Path(run) / f"rank{cluster.rank}_of_{cluster.world_size}.pt")
shutdown(cluster)
"""


def _run(launcher: list[str], tmp_path: Path, run: str) -> Path:
    env = {**os.environ, "BIN_PERCEPTION_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(Path(__file__).parents[1])}
    args = [str(tmp_path / "rank.py"), str(tmp_path / "bolt_n2.mcap"), str(tmp_path / "tiny.yaml"), str(tmp_path / run)]
    # A session of its own, so that a hung torchrun goes down with its workers.
    process = subprocess.Popen([*launcher, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = process.communicate(timeout=240)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 0, stderr[-3000:]
    return tmp_path / run


def _losses(run: Path) -> list[float]:
    with open(run / "loss_log.csv") as log:
        return [float(row["loss"]) for row in csv.DictReader(log)]


@pytest.mark.slow
def test_two_gloo_processes_stay_identical_and_train_what_one_process_trains(tmp_path):
    simulate_bag("bolt", 2, 12, seed=4, out=tmp_path / "bolt_n2.mcap", progress=False)
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(CONFIG))
    (tmp_path / "rank.py").write_text(RANK_SCRIPT)
    one = _run([sys.executable], tmp_path, "one")
    torchrun = Path(sys.executable).with_name("torchrun")
    two = _run([str(torchrun), "--nproc_per_node", "2", "--standalone"], tmp_path, "two")

    rank0, rank1 = (torch.load(two / f"rank{r}_of_2.pt", weights_only=True) for r in (0, 1))
    assert any(name.startswith("object_model.") for name in rank0)
    for name, value in rank0.items():
        assert torch.equal(rank1[name], value), f"ranks differ in {name}"

    # Every step's loss is the whole batch's (all-reduced), so it is one process's loss.
    assert len(_losses(two)) == 6
    assert _losses(two) == pytest.approx(_losses(one), rel=1e-4)
    reference = torch.load(one / "rank0_of_1.pt", weights_only=True)
    for name, value in reference.items():
        torch.testing.assert_close(rank0[name], value, rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")
    # Rank 0 alone wrote the run, and its checkpoint holds rank 0's weights.
    checkpoint = torch.load(two / "checkpoint.pt", weights_only=True)
    assert torch.equal(checkpoint["object_model"]["points"], rank0["object_model.points"])
