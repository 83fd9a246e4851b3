"""The decoded-frame cache: decoded once, memory-mapped, keyed by content, rebuilt when it does not read back."""

import shutil
import tracemalloc

import numpy as np
import pytest

from bin_perception.config import TopicsConfig
from bin_perception.io.bag import BagReader
from bin_perception.io.errors import BagError
from bin_perception.learning.frame_cache import bag_content_hash, open_bag, open_frames

from .conftest import NUT_BAG_SCENES
from .test_bag import REAL_TOPICS, _depth, _hand_made_bag, _info


def _recorded_bag(path, frames=5):
    """A real camera's bag: 16UC1 millimetres, its own topic names, one frame of the wrong size."""
    rng = np.random.default_rng(1)
    stamps = [10**9 * (i + 1) for i in range(frames)]
    depths = [_depth(s, rng.integers(300, 900, size=(48, 64)).astype(np.uint16), "16UC1") for s in stamps]
    depths.append(_depth(10**9 * (frames + 1), np.ones((40, 64), np.uint16), "16UC1"))  # CameraInfo says 64x48
    return _hand_made_bag(path, depths, [_info(s) for s in [*stamps, 10**9 * (frames + 1)]])


def test_simulated_and_recorded_bags_decode_once_into_memory_maps(tmp_path, nut_bag):
    recorded = _recorded_bag(tmp_path / "recorded")
    cache = tmp_path / "cache"
    sim = open_bag(nut_bag, TopicsConfig(), None, cache)
    real = open_bag(recorded, REAL_TOPICS, None, cache)
    assert isinstance(sim.depth_m, np.memmap) and len(sim) == NUT_BAG_SCENES
    for cached, frame in zip(sim, BagReader(nut_bag), strict=True):
        np.testing.assert_array_equal(cached.depth_m, frame.depth_m)
        np.testing.assert_array_equal(cached.K, frame.K)
        assert cached.stamp_ns == frame.stamp_ns
    # The bad frame is skipped and counted, not fatal; 16UC1 millimetres become metres.
    assert len(real) == 5 and real.skipped == 1
    assert 0.3 <= np.nanmin(real[0].depth_m) and np.nanmax(real[0].depth_m) < 0.9

    # Each bag is read with its own topics: the simulated bag's are the defaults.
    mixed = open_frames([str(nut_bag), str(recorded)], REAL_TOPICS, None, cache)
    assert mixed.keys == [sim.key, real.key] and len(mixed) == NUT_BAG_SCENES + 5
    assert mixed[NUT_BAG_SCENES].depth_m.shape == (48, 64) and mixed[0].depth_m.shape == sim.depth_m.shape[1:]
    with pytest.raises(IndexError):
        mixed[len(mixed)]
    # Nothing is left under a temporary name, and a second open reads the same entry, not the bag.
    assert sorted(p.name for p in cache.iterdir()) == sorted([sim.entry.name, real.entry.name])
    depth_file = sim.entry / "depth.npy"
    written = depth_file.stat().st_mtime_ns
    assert open_bag(nut_bag, TopicsConfig(), None, cache).entry == sim.entry
    assert depth_file.stat().st_mtime_ns == written


def test_the_key_follows_content_topics_and_limit(tmp_path, nut_bag):
    whole = open_bag(nut_bag, TopicsConfig(), None, tmp_path)
    first_two = open_bag(nut_bag, TopicsConfig(), 2, tmp_path)
    assert first_two.key != whole.key and len(first_two) == 2
    copy = tmp_path / "copy.mcap"
    shutil.copytree(nut_bag, copy)
    assert bag_content_hash(copy) == bag_content_hash(nut_bag)
    # Another bag under the same name is another entry: a stale cache is never read.
    (copy / "metadata.yaml").write_text((copy / "metadata.yaml").read_text() + "\n")
    assert open_bag(copy, TopicsConfig(), None, tmp_path).key != whole.key


def test_an_entry_that_does_not_read_back_whole_is_rebuilt(tmp_path, nut_bag):
    entry = open_bag(nut_bag, TopicsConfig(), None, tmp_path)
    expected = np.array(entry.depth_m)
    depth_file = entry.entry / "depth.npy"
    with open(depth_file, "r+b") as f:
        f.truncate(depth_file.stat().st_size // 2)
    rebuilt = open_bag(nut_bag, TopicsConfig(), None, tmp_path)
    np.testing.assert_array_equal(np.asarray(rebuilt.depth_m), expected)
    (rebuilt.entry / "meta.json").write_text("{")
    assert len(open_bag(nut_bag, TopicsConfig(), None, tmp_path)) == NUT_BAG_SCENES


def test_a_bag_without_a_usable_frame_is_a_clear_error(tmp_path):
    bad = _hand_made_bag(tmp_path / "bad", [_depth(10**9, np.ones((40, 64), np.float32), "32FC1")], [_info(10**9)])
    with pytest.raises(BagError, match=r"bad: no decodable depth frame on /cam/depth/image_rect_raw \(skipped 1 bad frames\)"):
        open_bag(bad, REAL_TOPICS, None, tmp_path / "cache")


def test_building_and_reading_hold_a_frame_at_a_time(tmp_path):
    stamps = [10**9 * (i + 1) for i in range(120)]
    depth = np.full((240, 320), 0.5, dtype=np.float32)  # 300 kB a frame, 36 MB in all
    bag = _hand_made_bag(tmp_path / "long", [_depth(s, depth, "32FC1") for s in stamps], [_info(s, width=320, height=240) for s in stamps])
    tracemalloc.start()
    frames = open_frames([str(bag)], REAL_TOPICS, None, tmp_path / "cache")
    total = sum(float(frames[i].depth_m.sum()) for i in range(len(frames)))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert total == pytest.approx(120 * depth.sum())
    assert peak < 12e6, f"the cache held {peak / 1e6:.1f} MB at its peak"
