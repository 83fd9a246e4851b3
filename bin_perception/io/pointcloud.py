"""Point clouds as PointCloud2 lays them out: packed little-endian records, one per point.

The segments follow PCL's XYZL convention (float32 x, y, z and a uint32 ``label``),
which RViz colours by, and which PCL tools read into ``pcl::PointXYZL`` by field name.
"""

from __future__ import annotations

import numpy as np

# sensor_msgs/PointField datatype codes.
FLOAT32 = 7
UINT32 = 6

XYZ_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4")])
XYZL_DTYPE = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("label", "<u4")])

# (name, byte offset, datatype) of each field, as PointField lists them.
XYZ_FIELDS = (("x", 0, FLOAT32), ("y", 4, FLOAT32), ("z", 8, FLOAT32))
XYZL_FIELDS = XYZ_FIELDS + (("label", 12, UINT32),)


def xyz_records(points_m: np.ndarray) -> np.ndarray:
    """(n,) records of XYZ_DTYPE from (n, 3) points."""
    points_m = np.asarray(points_m)
    if points_m.ndim != 2 or points_m.shape[1] != 3:
        raise ValueError(f"points: expected shape (n, 3), got {points_m.shape}")
    records = np.empty(len(points_m), dtype=XYZ_DTYPE)
    records["x"], records["y"], records["z"] = points_m.T
    return records


def xyzl_records(points_m: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(n,) records of XYZL_DTYPE from (n, 3) points and their (n,) instance labels."""
    xyz = xyz_records(points_m)
    labels = np.asarray(labels)
    if labels.shape != (len(xyz),):
        raise ValueError(f"labels: expected shape ({len(xyz)},), got {labels.shape}")
    records = np.empty(len(xyz), dtype=XYZL_DTYPE)
    for name in ("x", "y", "z"):
        records[name] = xyz[name]
    records["label"] = labels
    return records


def records_from_cloud(data: bytes, fields: list[tuple[str, int, int]], point_step: int, count: int) -> np.ndarray:
    """The records of a PointCloud2's data, for fields (name, offset, datatype) of float32 or uint32."""
    kinds = {FLOAT32: "<f4", UINT32: "<u4"}
    unknown = [name for name, _, datatype in fields if datatype not in kinds]
    if unknown:
        raise ValueError(f"point cloud: fields {unknown} are neither float32 nor uint32")
    dtype = np.dtype(
        {
            "names": [name for name, _, _ in fields],
            "formats": [kinds[datatype] for _, _, datatype in fields],
            "offsets": [offset for _, offset, _ in fields],
            "itemsize": point_step,
        }
    )
    if len(data) < point_step * count:
        raise ValueError(f"point cloud: {count} points of {point_step} bytes need {point_step * count} bytes, got {len(data)}")
    return np.frombuffer(bytes(data[: point_step * count]), dtype=dtype)
