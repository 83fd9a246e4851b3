"""A distorted camera's depth is undistorted before back-projection, or refused by name."""

from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from bin_perception.camera import undistort_depth
from bin_perception.io.errors import FrameError
from bin_perception.io.messages import camera_info_msg, frame_from_messages, image_msg

K = np.array([[300.0, 0.0, 160.0], [0.0, 300.0, 120.0], [0.0, 0.0, 1.0]])
PLUMB_BOB = np.array([-0.25, 0.08, 0.001, -0.002, 0.0])


def distorted_patch(centre_m: np.ndarray, distortion: np.ndarray) -> np.ndarray:
    """What a distorted camera sees of a small patch at ``centre_m``: a 7 x 7 square of its depth around its
    distorted projection, over a far floor."""
    depth_m = np.full((240, 320), 1.0, dtype=np.float32)
    (u, v), = cv2.projectPoints(centre_m[None], np.zeros(3), np.zeros(3), K, distortion)[0][:, 0]
    depth_m[round(v) - 3 : round(v) + 4, round(u) - 3 : round(u) + 4] = centre_m[2]
    return depth_m


def test_a_patch_near_the_corner_goes_back_where_the_pinhole_sees_it():
    centre_m = np.array([0.22, 0.16, 0.5])  # near the corner, where the distortion moves it most
    pinhole_u, pinhole_v = (K @ centre_m)[:2] / centre_m[2]
    depth_m = distorted_patch(centre_m, PLUMB_BOB)
    rows, cols = np.nonzero(depth_m < 0.9)
    assert np.hypot(cols.mean() - pinhole_u, rows.mean() - pinhole_v) > 8  # the distortion moves it by pixels

    undistorted = undistort_depth(depth_m, K, PLUMB_BOB)
    rows, cols = np.nonzero(undistorted < 0.9)
    assert np.hypot(cols.mean() - pinhole_u, rows.mean() - pinhole_v) < 1.5
    # Nearest neighbour: every depth is one the camera measured, none a blend of part and floor.
    assert set(np.unique(undistorted[np.isfinite(undistorted)])) <= {np.float32(0.5), np.float32(1.0)}


def _messages(depth_m: np.ndarray, model: str, distortion: np.ndarray):
    info = camera_info_msg(0, "camera", K, depth_m.shape[1], depth_m.shape[0])
    info = SimpleNamespace(**{name: getattr(info, name) for name in ("header", "height", "width", "k")}, d=distortion, distortion_model=model)
    return image_msg(0, "camera", depth_m, "32FC1"), info


def test_a_frame_from_a_distorted_camera_is_undistorted():
    depth_m = distorted_patch(np.array([0.22, 0.16, 0.5]), PLUMB_BOB)
    frame = frame_from_messages(*_messages(depth_m, "plumb_bob", PLUMB_BOB))
    np.testing.assert_array_equal(frame.depth_m, undistort_depth(depth_m, K, PLUMB_BOB))
    # Zero coefficients are a pinhole camera, whatever the model's name.
    clean = frame_from_messages(*_messages(depth_m, "equidistant", np.zeros(4)))
    np.testing.assert_array_equal(clean.depth_m, depth_m)


def test_a_distortion_model_we_do_not_apply_is_refused_by_name():
    depth_m = np.full((240, 320), 1.0, dtype=np.float32)
    with pytest.raises(FrameError, match="distortion model 'equidistant'.*rectify the depth first") as raised:
        frame_from_messages(*_messages(depth_m, "equidistant", np.array([0.1, 0.0, 0.0, 0.0])))
    assert raised.value.reason == "camera_info"
