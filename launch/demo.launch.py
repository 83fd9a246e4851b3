"""Launch the simulated camera and perception_node, and RViz if asked.

    ros2 launch bin_perception demo.launch.py checkpoint:=RUN_DIR/checkpoint.pt rviz:=true

`bin-perception demo` trains (once) and caches a model of 3 nuts; its path is in demo_out/metrics.json.
"""

from pathlib import Path

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node
from launch_ros.parameter_descriptions import ParameterValue

from launch import LaunchDescription


def generate_launch_description() -> LaunchDescription:
    share = Path(get_package_share_directory("bin_perception"))
    return LaunchDescription(
        [
            DeclareLaunchArgument("checkpoint", description="RUN_DIR/checkpoint.pt written by `bin-perception train`"),
            DeclareLaunchArgument("part", default_value="nut", description="the simulated part"),
            DeclareLaunchArgument("instances", default_value="3", description="parts per simulated bin (the node counts them)"),
            DeclareLaunchArgument("rate_hz", default_value="10.0", description="the simulated camera's frame rate"),
            DeclareLaunchArgument("rviz", default_value="false", description="also start RViz"),
            Node(
                package="bin_perception",
                executable="sim_camera_node",
                name="sim_camera_node",
                output="screen",
                parameters=[
                    {
                        "part": ParameterValue(LaunchConfiguration("part"), value_type=str),
                        "instances": ParameterValue(LaunchConfiguration("instances"), value_type=int),
                        "rate_hz": ParameterValue(LaunchConfiguration("rate_hz"), value_type=float),
                    }
                ],
            ),
            Node(
                package="bin_perception",
                executable="perception_node",
                name="perception_node",
                output="screen",
                parameters=[
                    str(share / "config" / "bin_perception.yaml"),
                    {
                        "checkpoint": ParameterValue(LaunchConfiguration("checkpoint"), value_type=str),
                    },
                ],
            ),
            Node(
                package="rviz2",
                executable="rviz2",
                name="rviz2",
                arguments=["-d", str(share / "config" / "bin_perception.rviz")],
                condition=IfCondition(LaunchConfiguration("rviz")),
            ),
        ]
    )
