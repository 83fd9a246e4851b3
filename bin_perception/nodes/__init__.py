"""The ROS 2 nodes: the only modules of bin_perception that import rclpy.

Each node is a thin layer over the library: it turns messages into arrays,
calls the library, and turns arrays back into messages.

Each executable's entry point imports its node module only when it runs, so that a machine
without ROS 2 gets one line that says what to install, not a traceback.
"""

from __future__ import annotations

import importlib
import sys

from ..extras import MissingExtraError, missing_extra


def _run(node: str, entry: str = "main") -> None:
    try:
        module = importlib.import_module(f"{__name__}.{node}")
    except MissingExtraError as error:
        sys.exit(f"{node}: {error}")
    except ModuleNotFoundError as error:
        missing = missing_extra(error, node)
        if missing is None:
            raise
        sys.exit(str(missing))
    getattr(module, entry)()


def perception_node() -> None:
    _run("perception_node")


def managed_perception_node() -> None:
    _run("perception_node", "main_managed")


def sim_camera_node() -> None:
    _run("sim_camera_node")


def pick_cell_node() -> None:
    _run("pick_cell_node")


def bag_player() -> None:
    _run("bag_player")


def bag_recorder() -> None:
    _run("bag_recorder")


def lowres_classifier_node() -> None:
    _run("lowres_classifier_node")
