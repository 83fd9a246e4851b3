"""The simulated picking cell: PyBullet's cup against true geometry, and a bin emptied by a trained model."""

import json

import numpy as np
import pybullet
import pytest
from pybullet_utils.bullet_client import BulletClient

from bin_perception.config import Config, GripperConfig, ModelConfig, TrainConfig
from bin_perception.learning.pick_cell import run_cell
from bin_perception.learning.trainer import train
from bin_perception.sim.dataset import simulate_bag
from bin_perception.sim.suction import cup_contact


@pytest.fixture
def two_plates():
    """Two 30 x 20 x 4 mm plates side by side on a floor, 1 mm apart, and a third tilted 40 degrees."""
    client = BulletClient(connection_mode=pybullet.DIRECT)
    floor = client.createMultiBody(0, client.createCollisionShape(pybullet.GEOM_BOX, halfExtents=[0.2, 0.2, 0.01]), basePosition=[0, 0, -0.01])
    plate = client.createCollisionShape(pybullet.GEOM_BOX, halfExtents=[0.015, 0.01, 0.002])
    left = client.createMultiBody(0.01, plate, basePosition=[-0.0155, 0, 0.002])
    right = client.createMultiBody(0.01, plate, basePosition=[0.0155, 0, 0.002])
    turned = pybullet.getQuaternionFromEuler([np.radians(40), 0, 0])
    tilted = client.createMultiBody(0.01, plate, basePosition=[0.1, 0.1, 0.02], baseOrientation=turned)
    yield client, [left, right, tilted], floor
    client.disconnect()


def test_the_cup_holds_a_flat_face_and_says_why_it_holds_nothing_else(two_plates):
    client, (left, right, tilted), _ = two_plates
    down, radius_m, flatness_m = np.array([0.0, 0.0, -1.0]), 0.006, 0.001
    parts = [left, right, tilted]

    def contact(x: float, y: float, z: float = 0.004, approach=down):
        return cup_contact(client, parts, np.array([x, y, z]), approach, radius_m, flatness_m)

    assert contact(-0.0155, 0.0) == contact(-0.0155, 0.0)  # the same question, the same answer
    assert contact(-0.0155, 0.0).body == left and contact(-0.0155, 0.0).reason == "held"
    assert contact(0.0, 0.0).reason == "two parts"  # across the gap between the plates
    assert contact(-0.028, 0.0).reason == "edge"  # half over the plate's end, half over the floor
    assert contact(0.0, 0.1, 0.0).reason == "bin"  # the floor
    assert contact(0.3, 0.3, 0.0).reason == "nothing"
    assert contact(0.1, 0.1, 0.02).reason == "tilt"  # 40 degrees off the cup's axis
    # Sent along the tilted plate's own normal, the cup holds it.
    normal = np.array([0.0, np.sin(np.radians(40)), -np.cos(np.radians(40))])
    assert contact(0.1, 0.1, 0.02, normal).body == tilted


@pytest.mark.slow
def test_a_trained_model_empties_a_bin_of_three_and_kmeans_is_scored_alike(tmp_path):
    bag = tmp_path / "housing_n3.mcap"
    simulate_bag("housing", 3, 16, seed=5, out=bag, progress=False)
    model = ModelConfig(method="per_seed", align_crops=True, input_size_px=64, model_points=256, observed_points=128)
    result = train([str(bag)], 3, Config(model=model, train=TrainConfig(batch_size=4, epochs=3, seed=0)), tmp_path / "run")
    cell = Config(gripper=GripperConfig(suction_radius_m=0.006))
    report = run_cell(result.perception, "housing", 3, cell, tmp_path / "model", max_attempts=8, seed=11)
    summary = report.summary()
    # Measured: 3 of 3 in 3 attempts.
    assert summary["parts_left"] == 0 and summary["picked"] == 3 and summary["attempts"] <= 6, summary
    written = json.loads((tmp_path / "model" / "metrics.json").read_text())
    assert written["success_rate"] == summary["success_rate"] and len(written["attempt_log"]) == summary["attempts"]
    assert [a["parts_before"] for a in written["attempt_log"]][0] == 3 and (tmp_path / "model" / "strip.png").stat().st_size > 0
    baseline = run_cell(None, "housing", 3, cell, tmp_path / "kmeans", "kmeans", max_attempts=8, seed=11).summary()
    # Measured: none in 4 attempts (3 edges, then no grasp left to try).
    assert baseline["attempts"] >= 1 and baseline["picked"] + baseline["parts_left"] == 3 and baseline["picked"] < 3
    with pytest.raises(ValueError, match="needs a trained per-seed perception"):
        run_cell(None, "housing", 3, cell, tmp_path / "none")
