"""The data layer: rosbag2 bags of depth frames, read and written without ROS."""

from .bag import BagReader, BagWriter, describe_topics, read_metadata
from .errors import BagError, FrameError

__all__ = ["BagReader", "BagWriter", "BagError", "FrameError", "describe_topics", "read_metadata"]
