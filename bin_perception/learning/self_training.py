"""After training, the network learns the frame of a model that is the part.

Eq. 4.1 lets the network put whichever face is up on its model's top, so the learned point set of an
asymmetric part settles as a plate of one face (docs/METHOD.md). The seeds' views, registered
into one frame without the network (:mod:`bin_perception.model.registration`), fuse to the whole part. So:
that fused model becomes the learned model X, and the network is fine-tuned, X held, to give each seed the
pose the registration found for it (the mean distance between X's points under the two poses: every
point has one place to go, so the loss has no other minimum to fall into). The poses come from the
user's own depth images, so this stays unsupervised: self-training on the registration's poses.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from ..frame import Frame
from ..model import BinPerception
from ..model.network import seed_poses
from ..model.registration import Registration, register_views
from ..model.seeds import widest_projection

# A seed of fewer points is a sliver, not a view of the part.
MIN_VIEW_POINTS = 30
# Fewer views per face than this leave the face clusters and their models too thin to assemble
# (docs/RESULTS.md has the frames it took on the housing).
MIN_VIEWS_PER_FACE = 80
# The network learns the poses of the views that fit the registered model best: the rest are as likely
# a wrong turn's.
_TRUSTED_VIEWS = 0.8
# A registered model wider than this share of the part's measured extent has faces placed apart, not one
# part. The measured extent is a quantile over seeds that each miss a side, so one part's model may span a
# little more.
_EXTENT_SLACK = 1.2
# Where the faces do not assemble at right angles, they are tried after turns about their long axes in these steps.
_LONG_AXIS_STEP_DEG = 15.0
# X under the two poses is compared on this many of its points.
_LOSS_POINTS = 256


@dataclass(frozen=True)
class SeedViews:
    """Every seed of some frames: its points (metres, camera frame), aligned crop, crop turn (radians) and
    centroid (model units)."""

    points_m: list[np.ndarray]
    crops: np.ndarray
    angles: np.ndarray
    centres: np.ndarray


@torch.no_grad()
def seed_views(perception: BinPerception, frames: Sequence[Frame], points_per_view: int = 300) -> SeedViews:
    """The seeds of ``frames`` as :class:`SeedViews`, each drawn down to ``points_per_view`` points."""
    rng = np.random.default_rng(0)
    points, crops, angles, centres = [], [], [], []
    for frame in frames:
        prediction = perception.predict(frame)
        observation = prediction.observation
        points_m = perception.normalization.to_metres(observation.points)
        for instance in range(1, perception.instances + 1):
            own = points_m[prediction.point_labels == instance]
            if len(own) < MIN_VIEW_POINTS:
                continue
            if len(own) > points_per_view:
                own = own[rng.choice(len(own), points_per_view, replace=False)]
            points.append(own)
            crops.append(observation.crops[instance - 1])
            angles.append(observation.angles[instance - 1])
            centres.append(observation.centres[instance - 1])
    return SeedViews(points, np.asarray(crops), np.asarray(angles), np.asarray(centres))


def register_seed_views(perception: BinPerception, frames: Sequence[Frame]) -> tuple[Registration, SeedViews]:
    """The seeds' views of ``frames`` registered into one frame; ValueError where the method or the
    views do not allow it (the thesis's method, unaligned crops, or too few views)."""
    config = perception.config
    if not (perception.per_seed and config.align_crops and config.registration_faces):
        raise ValueError("registering the views needs method per_seed, align_crops and registration_faces > 0")
    needed = MIN_VIEWS_PER_FACE * config.registration_faces
    if len(frames) * perception.instances < needed:
        raise ValueError(
            f"{len(frames)} frames of {perception.instances} parts are too few views to register "
            f"{config.registration_faces} faces (need {needed})"
        )
    was_training = perception.training
    perception.eval()
    try:
        views = seed_views(perception, tqdm(frames, desc="collect the seeds' views", unit="frame", leave=False))
    finally:
        perception.train(was_training)
    if len(views.points_m) < needed:
        raise ValueError(f"{len(views.points_m)} views are too few to register {config.registration_faces} faces (need {needed})")
    if perception.part_size_m is None:
        return register_views(views.points_m, views.crops, views.angles, config.registration_faces), views
    return register_within_extent(views, config.registration_faces, perception.part_size_m.extent), views


def register_within_extent(views: SeedViews, faces: int, extent_m: float) -> Registration:
    """The views registered (:func:`register_views`) into a model no wider than the part's measured
    ``extent_m`` allows: with ``faces`` faces at right angles; where the model is wider, at turns about the
    faces' long axes too; where it is still wider, with one face fewer at a time, down to one. A part that
    rests one way only (a pin on its flank, whatever its turn about its axis) shows no ``faces`` faces, and
    the clusters of one face placed as if they were others assemble into a cross; fewer clusters do not.
    ValueError where no count of faces assembles into one part."""
    limit_m = _EXTENT_SLACK * extent_m
    registration = register_views(views.points_m, views.crops, views.angles, faces)
    if widest_projection(registration.model_m) <= limit_m:
        return registration
    # The faces did not assemble at right angles to each other: the part rests at other angles too (a
    # bracket's tent). The finer search costs more and is not needed, or better, where right angles fit.
    tqdm.write(f"the faces did not assemble at right angles; trying turns about their long axes in {_LONG_AXIS_STEP_DEG} degree steps")
    registration = register_views(views.points_m, views.crops, views.angles, faces, long_axis_step_deg=_LONG_AXIS_STEP_DEG)
    widest_m = widest_projection(registration.model_m)
    fewer = faces
    while widest_m > limit_m and fewer > 1:
        tqdm.write(f"the {fewer} faces did not assemble into one part ({1000 * widest_m:.1f} mm wide); trying {fewer - 1}")
        fewer -= 1
        registration = register_views(views.points_m, views.crops, views.angles, fewer)
        widest_m = widest_projection(registration.model_m)
    if widest_m > limit_m:
        raise ValueError(
            f"the registered model spans {1000 * widest_m:.1f} mm, wider than the part the seeds measured "
            f"({1000 * extent_m:.1f} mm), with any number of faces from {faces} to 1: its faces did not assemble into one part"
        )
    return registration


def adopt_registration(
    perception: BinPerception, registration: Registration, views: SeedViews, epochs: int, batch_size: int = 32, lr: float = 1e-4, seed: int = 0
) -> list[float]:
    """Make the registered model X (centred, drawn to X's size) and fine-tune the network, X held, to the
    registration's poses of the best-fitting views; returns each epoch's mean loss (model units)."""
    normalization = perception.normalization
    centre_m = registration.model_m.mean(0)
    rng = np.random.default_rng(seed)
    count = len(perception.object_model.points)
    drawn = rng.choice(len(registration.model_m), count, replace=len(registration.model_m) < count)
    with torch.no_grad():
        perception.object_model.points.copy_(torch.from_numpy((registration.model_m[drawn] - centre_m) / normalization.scale_m))
    trusted = np.flatnonzero(registration.fit_m <= np.quantile(registration.fit_m, _TRUSTED_VIEWS))
    device = perception.object_model.points.device

    def tensor(values: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(values, dtype=np.float32)).to(device)

    # The registration's poses of the centred model, in model units: p = R x + (t + R c - centre) / scale.
    rotations = tensor(registration.poses[trusted, :3, :3])
    translations = tensor(normalization.to_model(registration.poses[trusted, :3, 3] + registration.poses[trusted, :3, :3] @ centre_m))
    crops = tensor(views.crops[trusted])[:, None]
    angles = tensor(views.angles[trusted])
    centres = tensor(views.centres[trusted])
    model = perception.object_model.points.detach()
    optimizer = torch.optim.Adam(perception.net.parameters(), lr=lr)
    # The batch norms keep the statistics they were trained with: updating them from these few, fast-moving
    # steps left inference (which reads them) far behind the training loss.
    perception.eval()
    losses = []
    generator = torch.Generator().manual_seed(seed)
    for _ in tqdm(range(epochs), desc="learn the registered poses", unit="epoch", leave=False):
        total = 0.0
        for batch in torch.randperm(len(trusted), generator=generator).split(batch_size):
            batch = batch.to(device)
            points = model[torch.randperm(len(model), generator=generator)[:_LOSS_POINTS].to(device)]
            predicted_R, offsets = seed_poses(perception.net, crops[batch], angles[batch])
            predicted = points @ predicted_R.transpose(1, 2) + (offsets + centres[batch])[:, None]
            target = points @ rotations[batch].transpose(1, 2) + translations[batch][:, None]
            loss = (predicted - target).norm(dim=-1).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += loss.item() * len(batch)
        losses.append(total / len(trusted))
    return losses
