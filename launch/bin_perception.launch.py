"""Launch perception_node on a depth camera.

    ros2 launch bin_perception bin_perception.launch.py checkpoint:=RUN_DIR/checkpoint.pt \
        depth_image:=/camera/depth/image_rect_raw depth_camera_info:=/camera/depth/camera_info

Parameters come from params_file (config/bin_perception.yaml by default), then from the arguments.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    params = Path(get_package_share_directory("bin_perception")) / "config" / "bin_perception.yaml"
    return LaunchDescription(
        [
            DeclareLaunchArgument("checkpoint", description="RUN_DIR/checkpoint.pt written by `bin-perception train`"),
            DeclareLaunchArgument("params_file", default_value=str(params), description="the node's parameter file"),
            DeclareLaunchArgument("depth_image", default_value="depth/image", description="the depth image topic"),
            DeclareLaunchArgument("depth_camera_info", default_value="depth/camera_info", description="its CameraInfo topic"),
            DeclareLaunchArgument("device", default_value="cpu", description="cpu or cuda"),
            Node(
                package="bin_perception",
                executable="perception_node",
                name="perception_node",
                output="screen",
                parameters=[
                    LaunchConfiguration("params_file"),
                    {
                        "checkpoint": ParameterValue(LaunchConfiguration("checkpoint"), value_type=str),
                        "device": ParameterValue(LaunchConfiguration("device"), value_type=str),
                    },
                ],
                remappings=[
                    ("depth/image", LaunchConfiguration("depth_image")),
                    ("depth/camera_info", LaunchConfiguration("depth_camera_info")),
                ],
            ),
        ]
    )
