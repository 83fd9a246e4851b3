"""Launch the low-resolution classifier on a colour camera.

    ros2 launch bin_perception lowres_classifier.launch.py model:=/path/MODEL.pt image:=/camera/color/image

Parameters come from config/lowres.yaml (installed in the package's share), then from the arguments.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    params = Path(get_package_share_directory("bin_perception")) / "config" / "lowres.yaml"
    return LaunchDescription(
        [
            DeclareLaunchArgument("model", description="MODEL.pt written by `bin-perception lowres fit`"),
            DeclareLaunchArgument("image", default_value="/camera/color/image", description="the colour image topic"),
            DeclareLaunchArgument("threads", default_value="0", description="torch threads, 0 = torch's default"),
            Node(
                package="bin_perception",
                executable="lowres_classifier_node",
                name="lowres_classifier",
                output="screen",
                parameters=[
                    str(params),
                    {
                        # A path stays a string even where it would parse as a number.
                        "model": ParameterValue(LaunchConfiguration("model"), value_type=str),
                        "threads": ParameterValue(LaunchConfiguration("threads"), value_type=int),
                    },
                ],
                remappings=[("image", LaunchConfiguration("image"))],
            ),
        ]
    )
