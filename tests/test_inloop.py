"""In-loop training without ROS: the replay buffer, and the trainer process learning, saving and resuming."""

import time

import numpy as np
import pytest
import torch

from bin_perception.config import ModelConfig, TrainConfig
from bin_perception.io.bag import BagReader
from bin_perception.learning.inloop import MEASURE_FRAMES, InloopSettings, InloopTraining, ReplayBuffer, initial_state
from bin_perception.model.observation import Observation
from bin_perception.model.perception import load_checkpoint


def observation(value: float, points: int = 10) -> Observation:
    cloud = np.full((points, 3), value, dtype=np.float32)
    return Observation(cloud, np.arange(points), np.zeros((4, 4), np.float32), (4, 4))


def test_fifo_keeps_the_newest_frames():
    buffer = ReplayBuffer(max_frames=5, max_bytes=10**6, policy="fifo")
    for i in range(12):
        buffer.add(observation(i))
    kept = sorted(float(o.points[0, 0]) for o in buffer.sample(5) + buffer.sample(5))
    assert len(buffer) == 5 and set(kept) <= {7.0, 8.0, 9.0, 10.0, 11.0}
    assert buffer.seen == 12


def test_reservoir_keeps_a_uniform_sample_of_everything_offered():
    kept_means = []
    for seed in range(20):
        buffer = ReplayBuffer(max_frames=50, max_bytes=10**7, policy="reservoir", seed=seed)
        for i in range(1000):
            buffer.add(observation(i, points=1))
        kept_means.append(np.mean([o.points[0, 0] for o in buffer._items]))
    # A uniform sample of 0..999 has mean 499.5 (its standard error over 20 x 50 draws is about 9).
    assert abs(np.mean(kept_means) - 499.5) < 40
    # fifo would keep only 950..999.
    assert min(kept_means) < 900


def test_the_buffer_is_bounded_in_bytes_and_drops_the_pixel_indices():
    one = observation(0.0, points=100)  # 1200 bytes of points and 64 of image, once the pixels are dropped
    buffer = ReplayBuffer(max_frames=1000, max_bytes=5000, policy="fifo")
    for i in range(20):
        buffer.add(observation(i, points=100))
    assert buffer.nbytes <= 5000 and len(buffer) == 3
    assert buffer.sample(1)[0].pixels.size == 0
    with pytest.raises(ValueError, match="exceeds max_bytes 100"):
        ReplayBuffer(10, 100).add(one)
    with pytest.raises(ValueError, match="policy 'lifo'"):
        ReplayBuffer(10, 100, policy="lifo")


@pytest.fixture(scope="module")
def observations(nut_bag):
    model = ModelConfig(method="per_seed", input_size_px=64, model_points=128, observed_points=64)
    frames = list(BagReader(nut_bag))
    settings = InloopSettings(checkpoint="unused", train=TrainConfig(batch_size=4, seed=0))
    perception, _, _ = initial_state(settings, model, 3, BagReader(nut_bag).workspace())
    return model, perception.workspace, [perception.observe(f) for f in frames]


def feed_until(training: InloopTraining, observations: list, condition, timeout_s: float = 120.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for obs in observations:
            training.offer(obs)
        result = condition()
        if result:
            return result
        time.sleep(0.2)
    raise AssertionError("the trainer made no progress in time")


@pytest.mark.slow
def test_the_trainer_learns_sends_whole_weights_saves_and_resumes(observations, tmp_path):
    model, workspace, frames = observations
    checkpoint = tmp_path / "inloop" / "checkpoint.pt"
    settings = InloopSettings(
        checkpoint=str(checkpoint), train=TrainConfig(batch_size=4, seed=0, optimizer="bpgrad", lipschitz=20.0),
        buffer_frames=16, publish_every_steps=3, checkpoint_every_s=3600, threads=1, min_frames=4,
    )
    perception, state, metadata = initial_state(settings, model, 3, workspace)
    initial = perception.object_model.points.detach().clone()
    training = InloopTraining(settings, perception, state, metadata)
    try:
        updated = feed_until(training, frames, lambda: training.new_model(perception))
        assert not torch.equal(updated.object_model.points, initial), "the weights sent back are the initial ones"
        assert updated.instances == 3 and not updated.training
        progress = feed_until(training, frames, lambda: training.progress() if training.progress().get("step", 0) >= 6 else None)
        assert progress["buffer_frames"] <= 16 and progress["frames_offered"] >= progress["frames_seen"]
        assert progress["lower_bound"] <= progress["upper_bound"]  # BPGrad's bounds
        saved = training.save()
        assert saved == str(checkpoint)
    finally:
        training.stop()
    _, state, metadata = load_checkpoint(checkpoint)
    stopped_at = metadata["step"]
    assert stopped_at >= 6 and metadata["mode"] == "train_inloop" and "min_loss" in str(state["optimizer"]["state"])

    # The same checkpoint path resumes: the step count goes on from where it stopped.
    perception, state, metadata = initial_state(settings, model, None, None)
    assert metadata["step"] == stopped_at
    training = InloopTraining(settings, perception, state, metadata)
    try:
        progress = feed_until(training, frames, lambda: training.progress() if training.progress().get("step", 0) > stopped_at else None)
        assert progress["step"] > stopped_at
    finally:
        training.stop()
    assert load_checkpoint(checkpoint)[2]["step"] > stopped_at


@pytest.mark.slow
def test_a_model_from_nothing_measures_its_part_on_the_first_frames(nut_bag, tmp_path):
    frames = list(BagReader(nut_bag))
    model = ModelConfig(method="per_seed", align_crops=True, input_size_px=64, model_points=64, observed_points=64)
    checkpoint = tmp_path / "inloop" / "checkpoint.pt"
    settings = InloopSettings(checkpoint=str(checkpoint), train=TrainConfig(batch_size=4, seed=0), buffer_frames=8, threads=1, min_frames=4)
    perception, state, metadata = initial_state(settings, model, 3, BagReader(nut_bag).workspace())
    assert perception.part_size_m is None
    training = InloopTraining(settings, perception, state, metadata)
    try:
        for i in range(MEASURE_FRAMES):
            assert training.part_size_m is None
            frame = frames[i % len(frames)]
            training.offer(perception.observe(frame), frame)
        # The nut is 20.3 mm between its farthest points.
        assert 0.018 < training.part_size_m.extent < 0.022
        training.save()
    finally:
        training.stop()
    assert load_checkpoint(checkpoint)[0].part_size_m == training.part_size_m
