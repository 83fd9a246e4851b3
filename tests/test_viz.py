"""The pictures drawn for people: the overlay a viewer sees, and the report figures built from it."""

import numpy as np

from bin_perception.frame import Frame
from bin_perception.viz import contact_sheet, depth_range_m, instance_colours, overlay_image, pose_error_figure, segmentation_overlays

K = np.array([[100.0, 0.0, 40.0], [0.0, 100.0, 30.0], [0.0, 0.0, 1.0]])


def test_the_overlay_shows_depth_instances_and_each_poses_axes():
    depth_m = np.full((60, 80), 0.5, dtype=np.float32)
    depth_m[:, :10] = np.nan
    labels = np.zeros((60, 80), dtype=np.uint16)
    labels[40:50, 60:70] = 2
    pose = np.eye(4)
    pose[:3, 3] = (0.0, 0.0, 0.5)  # on the optical axis: its origin projects onto (cx, cy)
    picture = overlay_image(depth_m, labels, K, pose[None], axis_m=0.05)

    assert picture.shape == (60, 80, 3) and picture.dtype == np.uint8
    assert np.all(picture[:, :10] == 0)  # no depth, no picture
    grey = picture[5, 30]
    assert grey[0] == grey[1] == grey[2] > 0
    # The instance's pixels lean to its colour: the same colour as its markers.
    colour = instance_colours(np.array([2]))[0]
    patch = picture[42:48, 62:68].reshape(-1, 3).astype(float).mean(0)
    assert np.argmax(patch) == np.argmax(colour)
    # x runs right from (40, 30) to (50, 30) in red; y down to (40, 40) in green.
    assert picture[30, 46, 0] > 200 and picture[30, 46, 1] < 100
    assert picture[36, 40, 1] > 200 and picture[36, 40, 0] < 100


def test_a_pose_behind_the_camera_is_not_drawn():
    depth_m = np.full((60, 80), 0.5, dtype=np.float32)
    labels = np.zeros((60, 80), dtype=np.uint16)
    pose = np.eye(4)
    pose[:3, 3] = (0.0, 0.0, -0.5)
    np.testing.assert_array_equal(overlay_image(depth_m, labels, K, pose[None]), overlay_image(depth_m, labels, K))


def test_the_report_figure_is_a_png_of_every_frame(tmp_path):
    frames = [Frame(np.full((60, 80), 0.5, dtype=np.float32), K, stamp_ns=i * 10**8, frame_id="camera") for i in range(3)]
    labels = [np.ones((60, 80), dtype=np.uint16) for _ in frames]
    pose = np.eye(4)
    pose[2, 3] = 0.5
    path = segmentation_overlays(frames, labels, tmp_path / "segments.png", "three frames", poses=[pose[None] for _ in frames])
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_one_far_pixel_does_not_squeeze_the_depth_colours():
    depth_m = np.full((60, 80), 0.50, dtype=np.float32)
    depth_m[:, 40:] = 0.52  # two parts, 2 cm apart
    depth_m[0, 0] = 40.0  # an outlier, as real cameras give
    depth_m[1, 1] = np.nan
    near_m, far_m = depth_range_m(depth_m)
    assert near_m == 0.50 and abs(far_m - 0.52) < 1e-6


def test_the_contact_sheet_scales_its_depth_by_the_robust_range(tmp_path, monkeypatch):
    import matplotlib.axes

    shown = []
    imshow = matplotlib.axes.Axes.imshow

    def recording_imshow(self, image, *args, **kwargs):
        shown.append(kwargs)
        return imshow(self, image, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "imshow", recording_imshow)
    depth_m = np.full((60, 80), 0.50, dtype=np.float32)
    depth_m[:, 40:] = 0.52
    depth_m[0, 0] = 40.0
    contact_sheet([Frame(depth_m, K, stamp_ns=0, frame_id="camera")], tmp_path / "sheet.png")
    assert shown[0]["vmin"] == 0.50 and shown[0]["vmax"] < 0.53


def test_the_pose_error_figure_shows_the_histogram_and_the_reliability_bars(tmp_path):
    import cv2

    errors_deg = np.array([1.0, 2.0, 3.0, 178.0, 180.0])
    reliability = [(0.0, 0.2, 2, 0.0), (0.2, 0.4, 0, float("nan")), (0.4, 0.6, 0, float("nan")), (0.6, 0.8, 1, 1.0), (0.8, 1.0, 2, 1.0)]
    both = cv2.imread(str(pose_error_figure(errors_deg, reliability, tmp_path / "both.png", "lever")))
    alone = cv2.imread(str(pose_error_figure(errors_deg, None, tmp_path / "alone.png")))
    # Two panels side by side without confidences' one: the reliability bars take their own axes.
    assert both.shape[1] > 1.8 * alone.shape[1] and both.shape[0] == alone.shape[0]
    assert not list(tmp_path.glob(".*"))  # written under a temporary name, then renamed
