"""A suction cup brought onto the simulated bin: does it hold a part, and which one.

The cup comes down its approach axis and meets the first surface in its way, as a real one does: the
part it was sent for, another lying over it, the bin, or nothing. It holds when its whole lip lands on
one part whose surface there is flat and faces the cup, within what a real bellows cup forgives:

- **one part**: the rays along the cup's axis and around its lip all meet the same part;
- **flat**: the points they meet lie within ``max_flatness_m`` (RMS) of their plane, on the true
  surface (the simulated camera's noise has no say here);
- **facing**: the surface's normal there is within ``COMPLIANCE_DEG`` of the cup's axis.

Otherwise the pick fails, and the reason says which: ``nothing``, ``bin``, ``two parts``, ``edge``
(the lip off the part or over a step), or ``tilt``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pybullet_utils.bullet_client import BulletClient

# A bellows cup seals on a surface up to this many degrees off its axis.
COMPLIANCE_DEG = 20.0
# Rays around the lip; the cup travels this far before and beyond the contact point along its axis.
_LIP_RAYS = 12
_REACH_M = 0.05


@dataclass(frozen=True)
class CupContact:
    """Where the cup landed: the part it holds (a body of ``parts``), or None and why not."""

    body: int | None
    reason: str  # "held", or why the cup holds nothing


def _lip_ring(point_w: np.ndarray, axis: np.ndarray, radius_m: float) -> np.ndarray:
    """The cup's centre and ``_LIP_RAYS`` points on its lip (k, 3), in the plane across ``axis``."""
    helper = np.array([1.0, 0.0, 0.0]) if abs(axis[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = np.cross(axis, helper)
    u /= np.linalg.norm(u)
    v = np.cross(axis, u)
    angles = np.linspace(0.0, 2 * np.pi, _LIP_RAYS, endpoint=False)
    ring = point_w + radius_m * (np.cos(angles)[:, None] * u + np.sin(angles)[:, None] * v)
    return np.vstack([point_w, ring])


def cup_contact(
    client: BulletClient, parts: list[int], point_w: np.ndarray, approach_w: np.ndarray, radius_m: float, max_flatness_m: float
) -> CupContact:
    """The cup of ``radius_m`` sent to ``point_w`` along ``approach_w`` (world frame, the direction it moves
    in): what it holds among the bodies ``parts``."""
    axis = np.asarray(approach_w, dtype=np.float64)
    axis = axis / np.linalg.norm(axis)
    targets = _lip_ring(np.asarray(point_w, dtype=np.float64), axis, radius_m)
    hits = client.rayTestBatch((targets - _REACH_M * axis).tolist(), (targets + _REACH_M * axis).tolist())
    bodies = np.array([hit[0] for hit in hits])
    positions = np.array([hit[3] for hit in hits])
    normal = np.asarray(hits[0][4])
    touched = {int(b) for b in bodies} & set(parts)
    if len(touched) > 1:
        return CupContact(None, "two parts")
    if not touched:
        return CupContact(None, "nothing" if np.all(bodies == -1) else "bin")
    centre = touched.pop()
    # Over a part's edge or its bore, some of the rays pass it by.
    if np.any(bodies != centre):
        return CupContact(None, "edge")
    centred = positions - positions.mean(axis=0)
    if np.sqrt(max(np.linalg.eigvalsh(centred.T @ centred / len(centred))[0], 0.0)) > max_flatness_m:
        return CupContact(None, "edge")
    if np.degrees(np.arccos(np.clip(-normal @ axis, -1.0, 1.0))) > COMPLIANCE_DEG:
        return CupContact(None, "tilt")
    return CupContact(centre, "held")
