"""A bin of identical parts in PyBullet, seen by a depth camera looking down.

The world frame has z up with the bin's floor at z = 0, centred on the origin.
Ground-truth poses are given in the camera's optical frame, like everything the
perception model sees.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pybullet
import trimesh
from pybullet_utils.bullet_client import BulletClient
from scipy.spatial.transform import Rotation

from ..cache import cache_dir
from ..camera import depth_from_zbuffer, opengl_projection, opengl_view
from ..config import Config
from ..geometry import matrix_to_quaternion
from .noise import apply_depth_noise, sensor_model
from .parts import Part, mesh_digest
from .suction import CellSurfaces

GRAVITY_M_S2 = 9.81
TIME_STEP_S = 1.0 / 240.0
# Bullet's default collision margin (about 1 mm) is as thick as a part's
# features; parts would float visibly above the floor and each other.
COLLISION_MARGIN_M = 1e-4
REST_LINEAR_M_S = 0.003
REST_ANGULAR_RAD_S = 0.05
REST_CHECK_STEPS = 8
# A shaker table's toss: each part leaves the floor at 0.2 to 0.4 m/s (a hop of 2 to 8 mm), drifts and spins.
SHAKE_HOP_M_S = (0.2, 0.4)
SHAKE_SIDEWAYS_M_S = 0.05
SHAKE_SPIN_RAD_S = 15.0
FLOOR_MARGIN_M = 0.0015  # points this close to the floor or walls are not parts (more where the depth is noisier)
STEEL_DENSITY_KG_M3 = 7800.0

PART_RGBA = (0.72, 0.72, 0.75, 1.0)
BIN_RGBA = (0.16, 0.36, 0.72, 1.0)
TABLE_RGBA = (0.45, 0.42, 0.38, 1.0)


@dataclass(frozen=True)
class SceneSample:
    """One rendered bin: images aligned pixel for pixel, and its ground truth.

    ``poses`` holds each instance's 4x4 pose in the camera frame, instance i
    (1-based in ``labels``) at row i - 1.
    """

    depth_m: np.ndarray  # (H, W) float32, NaN where invalid
    labels: np.ndarray  # (H, W) uint16, 0 = not a part
    rgb: np.ndarray  # (H, W, 3) uint8
    poses: np.ndarray  # (N, 4, 4) camera_from_part
    K: np.ndarray  # (3, 3)


@contextlib.contextmanager
def _quiet_stdout():
    """Silence a C library's writes to file descriptor 1 (V-HACD prints its progress there)."""
    saved = os.dup(1)
    with open(os.devnull, "wb") as devnull:
        os.dup2(devnull.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def pybullet_assets(part: Part) -> tuple[Path, Path]:
    """The part's visual OBJ and its V-HACD convex decomposition, built once and cached."""
    folder = cache_dir() / "pybullet" / f"{part.name}-{mesh_digest(part.mesh)}"
    visual, collision = folder / "visual.obj", folder / "collision.obj"
    if visual.exists() and collision.exists():
        return visual, collision
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as tmp:
        tmp_visual, tmp_collision = Path(tmp) / "visual.obj", Path(tmp) / "collision.obj"
        part.mesh.export(tmp_visual)
        with _quiet_stdout():
            pybullet.vhacd(str(tmp_visual), str(tmp_collision), str(Path(tmp) / "vhacd.log"), resolution=200000)
        if not tmp_collision.exists():
            raise RuntimeError(f"part {part.name}: V-HACD wrote no convex decomposition")
        os.replace(tmp_collision, collision)
        os.replace(tmp_visual, visual)
    return visual, collision


def bin_inner_size_m(part: Part, instances: int, config: Config) -> float:
    """The bin's inner side: wider for more parts, so a bin of N is cluttered but not heaped."""
    if config.scene.bin_inner_m is not None:
        return config.scene.bin_inner_m
    return part.max_extent_m * (1.25 + 0.25 * instances)


class BinSimulator:
    """Drops ``instances`` copies of ``part`` into a bin and renders what the camera sees.

    Each scene starts from an empty world, so a scene depends on its seed alone,
    never on the scenes simulated before it in the same process.
    """

    def __init__(self, part: Part, instances: int, config: Config) -> None:
        if instances < 0:
            raise ValueError(f"instances must be 0 (an empty bin) or more, got {instances}")
        self.part = part
        self.instances = instances
        self.config = config
        self.camera = config.camera.pinhole()
        self.sensor = sensor_model(config.sensor, config.noise)
        self.bin_inner_m = bin_inner_size_m(part, instances, config)
        self.wall_height_m = config.scene.wall_height_m or 0.6 * part.max_extent_m
        self.world_from_camera = self._camera_pose()
        self.camera_from_world = np.linalg.inv(self.world_from_camera)
        self._visual_path, self._collision_path = pybullet_assets(part)
        self._bodies: list[int] = []
        self._surfaces: CellSurfaces | None = None
        # Bullet would take the inertia from the hulls' bounding box; give it the
        # solid's own, in its principal frame. PyBullet then reports a body's
        # pose as the pose of that frame, not of the mesh's.
        moments, axes = np.linalg.eigh(part.mesh.moment_inertia * STEEL_DENSITY_KG_M3)
        if np.linalg.det(axes) < 0:
            axes[:, 2] *= -1
        self._principal_moments_kg_m2, self._principal_axes = moments, axes
        with _quiet_stdout():  # PyBullet greets every connection on stdout
            self._client = BulletClient(connection_mode=pybullet.DIRECT)
        self._view = opengl_view(self.world_from_camera).T.ravel().tolist()
        self._projection = (
            opengl_projection(self.camera, config.camera.near_m, config.camera.far_m).T.ravel().tolist()
        )

    def _camera_pose(self) -> np.ndarray:
        cam = self.config.camera
        rim_height_m = self.wall_height_m
        height_m = cam.height_above_rim_m
        if height_m is None:
            outer_half_m = self.bin_inner_m / 2 + self.config.scene.wall_thickness_m
            # The rim's outer edge falls at 95% of the nearer image border.
            half_px = 0.95 * min(cam.width_px / 2 / cam.fx_px, cam.height_px / 2 / cam.fy_px)
            height_m = outer_half_m / half_px
        pose = np.eye(4)
        # Optical axes in the world: x along +x, y along -y, z straight down; then the tilt about x, which
        # keeps the axis on the floor's centre.
        tilt = Rotation.from_euler("x", cam.tilt_deg, degrees=True).as_matrix()
        pose[:3, :3] = tilt @ np.diag([1.0, -1.0, -1.0])
        pose[:3, 3] = tilt @ (0.0, 0.0, rim_height_m + height_m)
        return pose

    @property
    def camera_from_bin(self) -> np.ndarray | None:
        """The bin's frame (the world's: z up from the floor's centre) in the camera's, where the camera is
        tilted; None where it looks straight down, and the workspace box is in the camera's own frame."""
        return self.camera_from_world if self.config.camera.tilt_deg else None

    @property
    def workspace(self) -> np.ndarray:
        """The box inside the bin's walls, above its floor: (2, 3) min and max corners, in the camera frame, or
        in the bin's (:attr:`camera_from_bin`) for a tilted camera."""
        half_m = self.bin_inner_m / 2 - FLOOR_MARGIN_M
        top_m = self.wall_height_m + 2 * self.part.radius_m
        camera_height_m = float(np.linalg.norm(self.world_from_camera[:3, 3]))
        # Above the floor by what its noise reaches: three sigmas and a depth unit.
        floor_margin_m = max(FLOOR_MARGIN_M, 3 * self.sensor.sigma_m(camera_height_m) + self.sensor.depth_unit_m)
        if self.camera_from_bin is not None:
            return np.array([[-half_m, -half_m, floor_margin_m], [half_m, half_m, top_m]])
        return np.array(
            [
                [-half_m, -half_m, max(camera_height_m - top_m, self.config.camera.near_m)],
                [half_m, half_m, camera_height_m - floor_margin_m],
            ]
        )

    def close(self) -> None:
        self._client.disconnect()

    def __enter__(self) -> BinSimulator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _build_world(self) -> None:
        c = self._client
        c.resetSimulation()
        c.setGravity(0.0, 0.0, -GRAVITY_M_S2)
        c.setTimeStep(TIME_STEP_S)
        for half_extents, centre in self._bin_boxes():
            self._add_box(half_extents, centre, BIN_RGBA)
        table_half = 20 * self.bin_inner_m / 2
        self._add_box((table_half, table_half, 0.01), (0.0, 0.0, -self.config.scene.wall_thickness_m - 0.01), TABLE_RGBA)

    def _bin_boxes(self) -> list[tuple[tuple[float, float, float], tuple[float, float, float]]]:
        """The bin's floor and walls: boxes as (half extents, centre), world frame."""
        half_in = self.bin_inner_m / 2
        wall = self.config.scene.wall_thickness_m
        h = self.wall_height_m
        boxes = [((half_in + wall, half_in + wall, wall / 2), (0.0, 0.0, -wall / 2))]
        for sign in (-1.0, 1.0):
            boxes.append(((wall / 2, half_in + wall, h / 2), (sign * (half_in + wall / 2), 0.0, h / 2)))
            boxes.append(((half_in, wall / 2, h / 2), (0.0, sign * (half_in + wall / 2), h / 2)))
        return boxes

    def surfaces(self) -> CellSurfaces:
        """The true surfaces a gripper meets: the part's mesh (placed by :meth:`world_poses`) and the bin's."""
        if self._surfaces is None:
            boxes = [
                trimesh.creation.box(extents=2 * np.asarray(half), transform=trimesh.transformations.translation_matrix(centre))
                for half, centre in self._bin_boxes()
            ]
            self._surfaces = CellSurfaces(self.part.mesh, trimesh.util.concatenate(boxes))
        return self._surfaces

    def _add_box(self, half_extents, centre, rgba) -> int:
        c = self._client
        collision = c.createCollisionShape(pybullet.GEOM_BOX, halfExtents=half_extents)
        visual = c.createVisualShape(pybullet.GEOM_BOX, halfExtents=half_extents, rgbaColor=rgba)
        body = c.createMultiBody(0.0, collision, visual, basePosition=centre)
        c.changeDynamics(body, -1, collisionMargin=COLLISION_MARGIN_M, lateralFriction=0.5)
        return body

    def _add_part(self) -> int:
        c = self._client
        collision = c.createCollisionShape(pybullet.GEOM_MESH, fileName=str(self._collision_path))
        visual = c.createVisualShape(pybullet.GEOM_MESH, fileName=str(self._visual_path), rgbaColor=PART_RGBA)
        body = c.createMultiBody(
            STEEL_DENSITY_KG_M3 * self.part.mesh.volume,
            collision,
            visual,
            basePosition=(0.0, 0.0, 10.0),
            baseInertialFrameOrientation=matrix_to_quaternion(self._principal_axes).tolist(),
        )
        c.changeDynamics(
            body,
            -1,
            localInertiaDiagonal=self._principal_moments_kg_m2.tolist(),
            collisionMargin=COLLISION_MARGIN_M,
            lateralFriction=0.5,
            rollingFriction=1e-5,
            spinningFriction=1e-4,
            restitution=0.1,
            linearDamping=0.1,
            angularDamping=0.1,
        )
        return body

    def _drop(self, body: int, rng: np.random.Generator, bodies: list[int]) -> None:
        """Place ``body`` above the bin at a random pose, to fall on whatever of ``bodies`` is already there."""
        c = self._client
        radius_m = self.part.radius_m
        reach_m = max(self.bin_inner_m / 2 - radius_m, 0.0) * self.config.scene.drop_spread
        x, y = rng.uniform(-reach_m, reach_m, size=2)
        pile_top_m = max([c.getAABB(b)[1][2] for b in bodies if b != body] + [0.0])
        z = pile_top_m + radius_m + 0.002
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        c.resetBasePositionAndOrientation(body, (x, y, z), q.tolist())
        c.resetBaseVelocity(body, (0.0, 0.0, 0.0), (0.0, 0.0, 0.0))

    def _settle(self, bodies: list[int]) -> None:
        """Step until every body is at rest, or the settle timeout passes."""
        max_steps = int(self.config.scene.settle_timeout_s / TIME_STEP_S)
        for _ in range(0, max_steps, REST_CHECK_STEPS):
            for _ in range(REST_CHECK_STEPS):
                self._client.stepSimulation()
            if all(self._at_rest(b) for b in bodies):
                return

    def _at_rest(self, body: int) -> bool:
        linear, angular = self._client.getBaseVelocity(body)
        return np.linalg.norm(linear) < REST_LINEAR_M_S and np.linalg.norm(angular) < REST_ANGULAR_RAD_S

    def _inside_bin(self, body: int) -> bool:
        (x, y, z), _ = self._client.getBasePositionAndOrientation(body)
        half_m = self.bin_inner_m / 2
        return abs(x) < half_m and abs(y) < half_m and 0.0 < z < self.wall_height_m + self.part.radius_m

    def simulate(self, rng: np.random.Generator) -> np.ndarray:
        """Drop the parts, ``scene.drop_layer`` at a time, and let each layer settle; their world poses, (N, 4, 4).

        A part that bounces out of the bin, or that is still moving when the
        settle timeout passes, is dropped again from above the pile.
        """
        self._build_world()
        bodies: list[int] = []
        layer = self.config.scene.drop_layer
        for first in range(0, self.instances, layer):
            bodies += [self._add_part() for _ in range(min(layer, self.instances - first))]
            misplaced = bodies[first:]
            # A new part waits far above the bin until it is dropped, above every part dropped before it: the
            # parts of a layer fall together but never start inside each other.
            waiting = set(misplaced)
            for _attempt in range(self.config.scene.max_redrops + 1):
                for body in misplaced:
                    waiting.discard(body)
                    self._drop(body, rng, [b for b in bodies if b not in waiting])
                self._settle(bodies)
                misplaced = [b for b in bodies if not (self._inside_bin(b) and self._at_rest(b))]
                if not misplaced:
                    break
            else:
                raise RuntimeError(
                    f"part {self.part.name}: could not bring {self.instances} parts to rest in a "
                    f"{self.bin_inner_m * 100:.1f} cm bin after {self.config.scene.max_redrops} re-drops"
                )
        self._bodies = bodies
        return self.world_poses()

    def render(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Depth (m), instance labels and RGB of the current world."""
        cam = self.config.camera
        _, _, rgba, zbuffer, segmentation = self._client.getCameraImage(
            cam.width_px,
            cam.height_px,
            viewMatrix=self._view,
            projectionMatrix=self._projection,
            renderer=pybullet.ER_TINY_RENDERER,
            lightDirection=(0.3, -0.4, 1.0),
            shadow=0,
        )
        shape = (cam.height_px, cam.width_px)
        depth_m = depth_from_zbuffer(np.reshape(zbuffer, shape), cam.near_m, cam.far_m)
        segmentation = np.reshape(segmentation, shape)
        # Sized by the largest id, not the count: a removed part's id is not reused.
        instance_of_body = np.zeros(max([int(segmentation.max()), *self._bodies]) + 2, dtype=np.uint16)
        instance_of_body[self._bodies] = np.arange(1, len(self._bodies) + 1)
        # Background pixels have body id -1; they index the final (zero) entry.
        labels = instance_of_body[segmentation]
        rgb = np.reshape(np.asarray(rgba, dtype=np.uint8), shape + (4,))[..., :3].copy()
        return depth_m, labels, rgb

    def scene(self, seed: int | list[int]) -> SceneSample:
        """Simulate and render one bin; the same seed gives the same bin, byte for byte."""
        rng = np.random.default_rng(seed)
        self.simulate(rng)
        return self.observe(rng)

    def observe(self, rng: np.random.Generator) -> SceneSample:
        """What the camera sees of the bin as it is now, its noise drawn from ``rng``, and its ground truth."""
        depth_m, labels, rgb = self.render()
        if not self.sensor.is_clean:
            depth_m = apply_depth_noise(depth_m, self.sensor, rng, self.camera.fx_px)
        return SceneSample(depth_m, labels, rgb, self.camera_from_world @ self.world_poses(), self.camera.K)

    def world_poses(self) -> np.ndarray:
        """The parts' poses in the world (N, 4, 4), instance i + 1 at row i."""
        poses = np.tile(np.eye(4), (len(self._bodies), 1, 1))
        for pose, body in zip(poses, self._bodies):
            position, quaternion = self._client.getBasePositionAndOrientation(body)
            principal_to_world = np.reshape(self._client.getMatrixFromQuaternion(quaternion), (3, 3))
            pose[:3, :3] = principal_to_world @ self._principal_axes.T
            pose[:3, 3] = position
        return poses

    @property
    def bodies(self) -> list[int]:
        """The parts' PyBullet bodies, instance i + 1 at index i."""
        return list(self._bodies)

    def shake(self, rng: np.random.Generator) -> None:
        """Shake the bin, as a cell's shaker table does when nothing in it can be picked: every part hops and
        turns, and the pile settles again. A part tossed out of the bin is dropped back in from above."""
        c = self._client
        for body in self._bodies:
            hop_m_s = (*rng.normal(0.0, SHAKE_SIDEWAYS_M_S, 2), rng.uniform(*SHAKE_HOP_M_S))
            c.resetBaseVelocity(body, hop_m_s, tuple(rng.normal(0.0, SHAKE_SPIN_RAD_S, 3)))
        self._settle(self._bodies)
        for _attempt in range(self.config.scene.max_redrops):
            out = [b for b in self._bodies if not self._inside_bin(b)]
            if not out:
                return
            for body in out:
                self._drop(body, rng, self._bodies)
            self._settle(self._bodies)

    def remove(self, body: int) -> None:
        """Take one part out of the bin (a gripper lifted it) and let the others settle; the instances after it
        are numbered one lower."""
        self._bodies.remove(body)
        self._client.removeBody(body)
        self._settle(self._bodies)
