"""docs/REAL_CAMERA.md's steps, run through the command line on a simulated bag of the real cell."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEPTH, INFO = "/camera/depth/image_rect_raw", "/camera/depth/camera_info"  # config/real_cell.yaml's topics
TINY_RECIPE = """
model: {method: per_seed, input_size_px: 64, model_points: 256, observed_points: 128, registration_faces: 0}
train: {batch_size: 8, epochs: 3, registration_epochs: 0}
"""


def cli(*args):
    exe = shutil.which("bin-perception") or f"{sys.prefix}/bin/bin-perception"
    done = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.mark.slow
def test_the_walkthrough_from_a_bag_to_a_model_on_the_real_cell(tmp_path):
    bag = tmp_path / "cell.mcap"
    cli("simulate", "--part", "nut", "--instances", 3, "--scenes", 24, "--seed", 4, "--config", ROOT / "config" / "real_cell.yaml",
        "--workers", 2, "--out", bag)
    topics = ("--depth-topic", DEPTH, "--info-topic", INFO)
    out = cli("inspect", bag, "--workspace-suggest", "--frames", 1, "--out", tmp_path / "sheet.png", *topics)
    box = re.search(r"suggested workspace \(m\), from the floor and walls of its first frame: (\S+)", out).group(1)
    assert len(box.split(",")) == 6 and box.startswith("-")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(TINY_RECIPE)
    out = cli("train", "--bag", bag, *topics, "--workspace", box, "--instances", 3, "--config", recipe, "--out", tmp_path / "run")
    assert "wrote" in out and (tmp_path / "run" / "checkpoint.pt").is_file()
    out = cli("evaluate", "--bag", bag, "--checkpoint", tmp_path / "run" / "checkpoint.pt", *topics, "--workspace", box,
              "--baselines", "kmeans", "--tune-frames", 0, "--out", tmp_path / "report")
    f1 = {line.split()[0]: float(line.split("F1")[1].split()[0]) for line in out.splitlines() if " F1 " in line}
    # The seeds need no long training to segment the bin: the real cell's 848 x 480 noisy frames are segmented.
    assert f1["model"] > 0.8, out
