"""The launch files, read statically (there is no launch_ros here), and run where launch_ros is."""

import ast
import importlib.util
from importlib.metadata import distribution
from pathlib import Path

import pytest
import yaml

from bin_perception.nodes.perception_params import check_parameter_file

ROOT = Path(__file__).resolve().parents[1]
LAUNCH_FILES = sorted((ROOT / "launch").glob("*.launch.py"))


def console_scripts() -> set[str]:
    """The console scripts that setup.py declares."""
    tree = ast.parse((ROOT / "setup.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            scripts = ast.literal_eval(node.value)["console_scripts"]
            return {line.split("=")[0].strip() for line in scripts}
    raise AssertionError("setup.py declares no entry_points")


def launched_nodes(path: Path) -> list[dict[str, str]]:
    """The constant keyword arguments of every Node(...) in a launch file."""
    nodes = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Node":
            nodes.append({k.arg: k.value.value for k in node.keywords if isinstance(k.value, ast.Constant)})
    return nodes


def share_files(path: Path) -> list[str]:
    """The files a launch file takes from the package's share: the string constants naming config/ files."""
    names = [n.value for n in ast.walk(ast.parse(path.read_text())) if isinstance(n, ast.Constant) and isinstance(n.value, str)]
    return [name for name in names if name.endswith((".yaml", ".rviz"))]


def test_there_are_the_launch_files_users_expect():
    assert {p.name for p in LAUNCH_FILES} >= {"bin_perception.launch.py", "demo.launch.py", "lowres_classifier.launch.py"}


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_each_launched_executable_of_ours_is_a_console_script(path):
    nodes = launched_nodes(path)
    assert nodes, f"{path.name} launches no Node"
    ours = [n for n in nodes if n.get("package") == "bin_perception"]
    assert ours and {n["executable"] for n in ours} <= console_scripts()
    # The installed package has them too (pip install -e . keeps them in step with setup.py).
    installed = {e.name for e in distribution("bin_perception").entry_points if e.group == "console_scripts"}
    assert {n["executable"] for n in ours} <= installed


@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_each_parameter_file_exists_and_fits_the_schema(path):
    for name in share_files(path):
        file = ROOT / "config" / name
        assert file.is_file(), f"{path.name} uses config/{name}, which does not exist"
        if name == "bin_perception.yaml":
            values = check_parameter_file(file)
            assert {"checkpoint", "mode", "device"} <= set(values)
            # The launched node keeps what its checkpoint was trained with unless the user sets these.
            assert not {"instances", "workspace", "model.hpr_exponent", "model.observed_points"} & set(values)
        elif name.endswith(".rviz"):
            layout = yaml.safe_load(file.read_text())["Visualization Manager"]
            topics = {d.get("Topic", {}).get("Value") for d in layout["Displays"] if isinstance(d.get("Topic"), dict)}
            assert {"/perception_node/segments", "/perception_node/markers", "/perception_node/poses"} <= topics
            assert layout["Global Options"]["Fixed Frame"] == "camera_depth_optical_frame"
        else:
            assert isinstance(yaml.safe_load(file.read_text()), dict)


@pytest.mark.skipif(importlib.util.find_spec("launch_ros") is None, reason="launch_ros is not installed here")
@pytest.mark.parametrize("path", LAUNCH_FILES, ids=lambda p: p.name)
def test_each_launch_file_builds_its_description(path):
    spec = importlib.util.spec_from_file_location(path.stem.replace(".", "_"), path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    assert description.entities
