"""Depth images pair with their CameraInfo by stamp."""

import threading
import time

from bin_perception.io.pairing import StampPairing

MS = 1_000_000


def test_the_nearest_stamp_within_the_tolerance_pairs():
    infos = StampPairing()
    for stamp in (0, 33 * MS, 66 * MS):
        infos.add(stamp, f"info {stamp}")
    assert infos.nearest(34 * MS, 2 * MS) == ("info 33000000", 1 * MS)
    assert infos.nearest(50 * MS, 2 * MS) == (None, 16 * MS)  # the nearest is 16 ms away: another frame's
    assert StampPairing().nearest(0, MS) == (None, None)


def test_an_image_that_arrives_first_waits_for_its_camera_info():
    infos = StampPairing()
    infos.add(0, "an older frame's")
    late = threading.Timer(0.05, infos.add, args=(100 * MS, "its own"))
    late.start()
    start_s = time.monotonic()
    assert infos.nearest(100 * MS, MS, wait_s=5.0) == ("its own", 0)
    assert time.monotonic() - start_s < 4.0
    late.join()


def test_only_the_latest_are_kept():
    infos = StampPairing(depth=2)
    for stamp in range(5):
        infos.add(stamp * MS, stamp)
    assert len(infos) == 2 and infos.nearest(0, 10 * MS) == (3, 3 * MS)
