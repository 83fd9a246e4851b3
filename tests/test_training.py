"""Real training on small simulated data, then evaluation against the ground truth."""

import csv
import json
from collections import Counter

import numpy as np
import pytest

from bin_perception.config import Config, ModelConfig, TrainConfig
from bin_perception.learning.data import resolve_workspace
from bin_perception.learning.evaluate import evaluate
from bin_perception.learning.frame_cache import open_frames
from bin_perception.learning.observations import ObservationCache, observation_nbytes
from bin_perception.learning.trainer import train
from bin_perception.model import BinPerception, CheckpointError
from bin_perception.sim.dataset import simulate_bag

TINY_MODEL = ModelConfig(method="whole_image", input_size_px=64, model_points=256, observed_points=256)


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("training")
    bag = root / "nut_n2.mcap"
    simulate_bag("nut", 2, 40, seed=5, out=bag, progress=False)
    config = Config(model=TINY_MODEL, train=TrainConfig(batch_size=8, epochs=12, snapshot_every_epochs=4, seed=1))
    result = train([str(bag)], 2, config, root / "run")
    return bag, result


@pytest.mark.slow
def test_tiny_training_lowers_the_loss_and_writes_its_run(trained_run):
    _, result = trained_run
    run = result.run_dir
    with open(run / "loss_log.csv") as f:
        losses = [float(row["loss"]) for row in csv.DictReader(f)]
    assert len(losses) == result.steps == 12 * 5
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])
    metadata = json.loads((run / "checkpoint.json").read_text())
    assert metadata["step"] == result.steps and metadata["epoch"] == 12 and metadata["instances"] == 2
    assert len(metadata["model_points_m"]) == 256
    assert (run / "model.ply").read_bytes().startswith(b"ply")
    assert len(list((run / "snapshots").glob("model_epoch_*.png"))) == 3


@pytest.mark.slow
def test_evaluate_writes_its_report_and_the_model_beats_chance(trained_run, tmp_path):
    bag, result = trained_run
    report = tmp_path / "report"
    metrics = evaluate(str(bag), report, str(result.run_dir / "checkpoint.pt"), baselines=("kmeans", "dbscan"), tune_frames=8)
    methods = metrics["methods"]
    assert set(methods) == {"model", "kmeans", "dbscan"}
    for m in methods.values():
        assert {"f1", "precision", "recall", "frames", "ms_per_frame"} <= set(m) and m["frames"] == 32
    # Two instances labelled at random score a pairwise F1 of about 0.5.
    assert methods["model"]["f1"] > 0.6
    assert methods["model"]["chamfer"] > 0 and metrics["model_fidelity_m"] > 0
    # The chamfer is the larger of its two directions, and no model of its 256 points beats the evenly spread one.
    assert metrics["model_fidelity_m"] == max(metrics["model_to_surface_m"], metrics["surface_to_model_m"])
    assert 0 < metrics["model_fidelity_floor_m"] < metrics["model_fidelity_m"]
    assert "A perfect model of as many points" in (report / "report.md").read_text()
    # The poses are scored under the map that the tuning frames teach, and under the shape's alone beside it.
    model = methods["model"]
    assert 0 <= model["shape_alignment_add_recall"] <= 1 and 0 <= model["taught_alignment_deg"] <= 180
    assert "as the tuning frames' poses teach it" in (report / "report.md").read_text()
    assert json.loads((report / "metrics.json").read_text())["methods"]["kmeans"]["f1"] == methods["kmeans"]["f1"]
    for name in ("report.md", "segments_model.png", "segments_kmeans.png", "model_vs_mesh.png"):
        assert (report / name).stat().st_size > 0


@pytest.mark.slow
def test_a_checkpoint_that_does_not_fit_is_refused(trained_run, tmp_path):
    bag, result = trained_run
    checkpoint = str(result.run_dir / "checkpoint.pt")
    with pytest.raises(CheckpointError, match=r"trained for N=2, but --instances is 3"):
        evaluate(str(bag), tmp_path, checkpoint, instances=3)
    with pytest.raises(CheckpointError, match=r"input size 64 px, but the config says model.input_size_px 224"):
        evaluate(str(bag), tmp_path, checkpoint, config=Config())
    other = tmp_path / "nut_n3.mcap"
    simulate_bag("nut", 3, 2, seed=1, out=other, progress=False)
    with pytest.raises(CheckpointError, match=r"the bag holds bins of 3"):
        evaluate(str(other), tmp_path, checkpoint)


def test_training_observes_each_frame_once_over_its_epochs(nut_bag, tmp_path, monkeypatch):
    observed = Counter()
    observe = BinPerception.observe

    def counting_observe(self, frame):
        observed[frame.stamp_ns] += 1
        return observe(self, frame)

    monkeypatch.setattr(BinPerception, "observe", counting_observe)
    model = ModelConfig(input_size_px=32, model_points=64, observed_points=64, registration_faces=0)
    config = Config(model=model, train=TrainConfig(batch_size=2, epochs=3, scenes=None, registration_epochs=0, seed=0))
    result = train([str(nut_bag)], 3, config, tmp_path / "run")
    assert result.steps == 3 * 3
    # Three epochs over the bag's six frames; the fused model's closing pass predicts each once more.
    assert set(observed.values()) == {2} and len(observed) == 6


def test_past_its_budget_the_cache_observes_again(nut_bag):
    frames = open_frames([str(nut_bag)], Config().topics, None)
    perception = BinPerception(3, resolve_workspace(None, Config(), [str(nut_bag)])[0], ModelConfig(input_size_px=32))
    first = perception.observe(frames[0])
    cache = ObservationCache(perception, frames, budget_bytes=observation_nbytes(first) + 1)
    for _ in range(2):
        for index in range(len(frames)):
            cache[index]
    assert len(cache) == 1 and cache.observed == 1 + 2 * (len(frames) - 1)
