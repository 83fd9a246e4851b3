"""The simulated bin: the part library, PyBullet drops, the sensor model, and bags of frames with their truth.

It needs the ``[sim]`` extra (pybullet, trimesh, manifold3d).
"""

from ..extras import require

for _module in ("pybullet", "trimesh", "manifold3d"):
    require(_module, "the simulator (bin_perception.sim)")
