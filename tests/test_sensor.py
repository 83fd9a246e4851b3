"""The simulated depth cameras measure what their presets say they do."""

import numpy as np
import pytest

from bin_perception.config import Config, NoiseConfig
from bin_perception.sim.noise import OUTLIER_RANGE_M, SENSOR_PRESETS, apply_depth_noise, projector_shadows, sensor_model
from bin_perception.sim.parts import load_part
from bin_perception.sim.scene import BinSimulator

FX_PX = 600.0
NOISY = [name for name in SENSOR_PRESETS if name != "clean"]


def plane(depth_m: float, shape=(480, 848)) -> np.ndarray:
    return np.full(shape, depth_m, dtype=np.float32)


@pytest.mark.parametrize("name", NOISY)
def test_each_preset_has_the_noise_holes_and_outliers_it_documents(name):
    sensor = SENSOR_PRESETS[name]
    rng = np.random.default_rng(0)
    # Off the 1 mm grid, and far enough that sigma is about the unit or more, where it adds unit^2 / 12.
    for depth_m in (0.8004, 1.2004):
        measured = apply_depth_noise(plane(depth_m), sensor, rng, FX_PX)
        valid = np.isfinite(measured)
        outliers = valid & (measured >= OUTLIER_RANGE_M[0])
        # A flat plane has no edges and casts no shadow: holes are all it loses.
        assert abs((~valid).mean() - sensor.hole_fraction) < 0.01
        assert abs(outliers.mean() - sensor.outlier_fraction * (1 - sensor.hole_fraction)) < 0.001
        error_m = measured[valid & ~outliers] - depth_m
        # The spread grows with the square of the depth.
        expected_m = np.sqrt(sensor.sigma_m(depth_m) ** 2 + sensor.depth_unit_m**2 / 12)
        assert abs(error_m.std() - expected_m) < 0.1 * expected_m, (depth_m, error_m.std(), expected_m)
        assert abs(error_m.mean()) < 0.2 * expected_m
        kept = measured[valid & ~outliers] / sensor.depth_unit_m
        np.testing.assert_allclose(kept, np.round(kept), atol=1e-3)


@pytest.mark.parametrize("name", NOISY)
def test_noise_is_correlated_over_the_presets_window(name):
    sensor = SENSOR_PRESETS[name]
    measured = apply_depth_noise(plane(0.6), sensor, np.random.default_rng(1), FX_PX).astype(np.float64)
    error = measured - 0.6
    usable = np.isfinite(error[:, :-1]) & np.isfinite(error[:, 1:]) & (np.abs(error[:, :-1]) < 1) & (np.abs(error[:, 1:]) < 1)
    neighbours = np.corrcoef(error[:, :-1][usable], error[:, 1:][usable])[0, 1]
    assert neighbours > 0.5  # one pixel apart, the errors are alike, as a matching window makes them


def test_the_clean_camera_changes_nothing():
    assert SENSOR_PRESETS["clean"].is_clean and all(not SENSOR_PRESETS[name].is_clean for name in NOISY)


def test_shadows_fall_on_the_side_away_from_the_projector():
    depth_m = plane(0.6)
    depth_m[200:280, 400:480] = 0.55  # a part 5 cm above the floor
    shadows = projector_shadows(depth_m, FX_PX, baseline_m=0.055)
    rows, cols = np.nonzero(shadows)
    # The projector is along +x: the floor just left of the part is in its shadow, nothing right of it is.
    assert len(cols) and cols.max() < 400 and cols.min() >= 400 - 7
    assert set(np.unique(rows)) == set(range(200, 280))
    # The gap is fx b (1 / z_near - 1 / z_far): 600 x 0.055 x (1 / 0.55 - 1 / 0.6) = 5 px.
    assert abs(len(cols) / 80 - 600 * 0.055 * (1 / 0.55 - 1 / 0.6)) < 1
    assert not projector_shadows(depth_m, FX_PX, baseline_m=0.0).any()


def test_edge_pixels_are_lost_or_fly_between_their_surfaces():
    depth_m = plane(0.6)
    depth_m[200:280, 400:480] = 0.55
    sensor = SENSOR_PRESETS["tof"]
    measured = apply_depth_noise(depth_m, sensor, np.random.default_rng(2), FX_PX)
    between = np.isfinite(measured) & (measured > 0.56) & (measured < 0.59)
    assert between.sum() > 100  # mixed pixels, which no surface of the scene holds
    border = np.zeros_like(between)
    border[198:282, 398:482] = True
    border[202:278, 402:478] = False
    assert border[between].mean() > 0.9


def test_a_preset_key_given_in_the_config_replaces_the_presets():
    model = sensor_model("structured_light", NoiseConfig(hole_fraction=0.2))
    assert model.hole_fraction == 0.2 and model.projector_baseline_m == SENSOR_PRESETS["structured_light"].projector_baseline_m
    assert sensor_model("clean", NoiseConfig()).is_clean


def test_the_simulator_renders_through_the_sensor():
    part = load_part("nut")
    with BinSimulator(part, 2, Config()) as simulator:
        clean = simulator.scene(4)
    with BinSimulator(part, 2, Config(sensor="structured_light")) as simulator:
        measured = simulator.scene(4)
    np.testing.assert_array_equal(clean.labels, measured.labels)
    lost = ~np.isfinite(measured.depth_m) & np.isfinite(clean.depth_m)
    assert 0.03 < lost.mean() < 0.5


def test_simulate_takes_the_sensor_and_records_it(tmp_path):
    import json

    from bin_perception.cli import main
    from bin_perception.io.bag import BagReader, read_metadata

    assert main(["simulate", "--part", "nut", "--instances", "2", "--scenes", "2", "--sensor", "stereo", "--out", str(tmp_path / "bag")]) == 0
    frames = list(BagReader(tmp_path / "bag"))
    assert all(np.isnan(f.depth_m).mean() > 0.1 for f in frames)
    recorded = json.loads(read_metadata(tmp_path / "bag")["custom_data"]["bin_perception.config"])
    assert recorded["sensor"] == "stereo"
