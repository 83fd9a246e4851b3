import shutil
import subprocess
import sys

import pytest

from bin_perception.cli import attach_negative_values
from bin_perception.sim.parts import part_names


def _cli(*args, check=True):
    # The installed console script, as a user runs it.
    exe = shutil.which("bin-perception") or f"{sys.prefix}/bin/bin-perception"
    result = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=300)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_a_value_with_a_leading_minus_reaches_its_flag():
    box = "-0.15,-0.1,0.3,0.15,0.1,0.5"
    assert attach_negative_values(["inspect", "bag", "--workspace", box]) == ["inspect", "bag", f"--workspace={box}"]
    # An option after the flag stays an option, for argparse to report the missing value.
    assert attach_negative_values(["inspect", "--workspace", "--frames", "2"]) == ["inspect", "--workspace", "--frames", "2"]
    assert attach_negative_values(["--workspace"]) == ["--workspace"]


def test_parts_lists_the_library():
    out = _cli("parts").stdout
    for name in part_names():
        assert f"\n{name} " in out


@pytest.mark.slow
def test_simulate_then_inspect(tmp_path):
    bag = tmp_path / "bolt_n2.mcap"
    out = _cli("simulate", "--part", "bolt", "--instances", 2, "--scenes", 8, "--seed", 3, "--workers", 2, "--out", bag).stdout
    assert "wrote 8 scenes" in out and "scenes/s" in out
    sheet = tmp_path / "sheet.png"
    out = _cli("inspect", bag, "--out", sheet, "--frames", 3).stdout
    lines = {line.split()[0]: line.split()[1:] for line in out.splitlines() if line.startswith("  /")}
    assert lines["/camera/depth/image"] == ["sensor_msgs/msg/Image", "8", "msgs", "32FC1", "224x224"]
    assert lines["/camera/color/image"] == ["sensor_msgs/msg/Image", "8", "msgs", "rgb8", "224x224"]
    assert lines["/gt/labels"] == ["sensor_msgs/msg/Image", "8", "msgs", "mono16", "224x224"]
    assert lines["/gt/poses"] == ["geometry_msgs/msg/PoseArray", "8", "msgs", "2", "poses"]
    assert lines["/camera/depth/camera_info"][:4] == ["sensor_msgs/msg/CameraInfo", "8", "msgs", "224x224"]
    assert sheet.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The README's own box, which starts with a minus as a box in the camera frame nearly always does.
    out = _cli("inspect", bag, "--out", sheet, "--frames", 1, "--workspace", "-0.15,-0.1,0.3,0.15,0.1,0.5").stdout
    assert "workspace (m): -0.1500,-0.1000,0.3000,0.1500,0.1000,0.5000" in out
    out = _cli("inspect", bag, "--out", sheet, "--frames", 1, "--workspace-suggest").stdout
    assert "suggested workspace (m), from the floor and walls of its first frame: " in out
    alone = _cli("inspect", bag, "--frames", 1, "--bin-pose", "0,0,0.7,0.9659258,0,0,0.2588190", check=False)
    assert alone.returncode == 2 and "--bin-pose is the frame of a --workspace box; give the box too" in alone.stderr
    out = _cli("inspect", bag, "--out", sheet, "--frames", 1, "--workspace", "-0.1,-0.1,0.002,0.1,0.1,0.15",
               "--bin-pose", "-0.01,0,0.7,0.9659258,0,0,0.2588190").stdout
    assert "bin pose: -0.010000,0.000000,0.700000,0.965926,0.000000,0.000000,0.258819" in out
    again = _cli("simulate", "--part", "bolt", "--instances", 2, "--scenes", 8, "--seed", 3, "--out", bag, check=False)
    assert again.returncode == 2 and "already exists" in again.stderr


def test_bad_bag_gives_one_clear_line(tmp_path):
    result = _cli("inspect", tmp_path / "missing.mcap", check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == f"bin-perception inspect: error: bag {tmp_path / 'missing.mcap'}: no such file or directory"
