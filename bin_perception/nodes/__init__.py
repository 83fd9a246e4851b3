"""The ROS 2 nodes: the only modules of bin_perception that import rclpy.

Each node is a thin layer over the library: it turns messages into arrays,
calls the library, and turns arrays back into messages.
"""
