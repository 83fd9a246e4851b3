"""The simulated picking cell: a poured bin emptied one suction pick at a time, perceived as the node does.

Each attempt renders what the camera sees of the bin as it is now (with the cell's sensor noise), perceives
it through the library's own path (:meth:`BinPerception.predict`, then
:func:`bin_perception.picking.prediction_picks`, as ``perception_node`` runs them), sends the cup to the
best-ranked grasp and lets the parts' true surfaces say what it met (:func:`bin_perception.sim.suction.cup_contact`). A part
the cup holds is lifted out and the pile settles; a failed pick leaves the bin as it was, and the next
attempt passes over the grasps that failed there, as a cell skips a pick it has just missed. Where no grasp is
left to try (``no grasp``), the bin is shaken, as a shaker table under a real bin does, and perceived again.
The success rate is the parts held per cup sent, as cells report it; the shakes are counted beside it. It
stops when the bin is empty, the attempts run out, or shaking ``SHAKES_BEFORE_HELP`` times in a row has left
nothing to pick.

The baseline in the same cell is K-means told the true count of the parts left, with the cup sent straight
down onto each cluster's point nearest the camera, the highest first.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from ..baselines import kmeans_labels
from ..config import AUTO, Config, GripperConfig
from ..frame import Frame
from ..geometry import backproject, in_workspace, project_to_pixels, transform_points
from ..io.atomic import write_text
from ..model import BinPerception
from ..picking import prediction_picks
from ..sim.parts import load_part
from ..sim.scene import BinSimulator
from ..sim.suction import cup_contact
from ..viz import overlay_image, pick_strip

METHODS = ("model", "kmeans")
# A failed grasp point is passed over by the next attempts on the same bin within this many cup radii of it.
_FAILED_RADII = 1.0
# Where no grasp is left to try, the bin is shaken and perceived again, this many times in a row at the most.
SHAKES_BEFORE_HELP = 3
# The outcome of an attempt that found no grasp to try: the cup was not sent, and the bin is shaken.
NO_GRASP = "no grasp"


@dataclass(frozen=True)
class Attempt:
    """One pick: the parts in the bin before it, what the cup met, and its cost."""

    parts_before: int
    outcome: str  # "held", "no grasp", or what the cup met instead (:func:`bin_perception.sim.suction.cup_contact`)
    perceive_ms: float  # the depth image to the chosen grasp
    cycle_s: float  # the whole attempt: rendering, perception, the cup and the pile settling


@dataclass
class PickReport:
    part: str
    instances: int
    method: str
    attempts: list[Attempt] = field(default_factory=list)
    shakes: int = 0  # the bin shaken where no grasp was left to try

    @property
    def picked(self) -> int:
        return sum(a.outcome == "held" for a in self.attempts)

    @property
    def parts_left(self) -> int:
        return self.instances - self.picked

    @property
    def cups_sent(self) -> int:
        return sum(a.outcome != NO_GRASP for a in self.attempts)

    def summary(self) -> dict:
        attempts = len(self.attempts)
        outcomes = dict(Counter(attempt.outcome for attempt in self.attempts))
        sent = self.cups_sent
        return {
            "part": self.part,
            "instances": self.instances,
            "method": self.method,
            "attempts": attempts,
            "cups_sent": sent,
            "no_grasp": attempts - sent,
            "shakes": self.shakes,
            "picked": self.picked,
            "parts_left": self.parts_left,
            "success_rate": self.picked / sent if sent else 0.0,
            "cups_per_part": sent / self.picked if self.picked else None,
            "outcomes": outcomes,
            "perceive_ms_p50": float(np.median([a.perceive_ms for a in self.attempts])) if attempts else None,
            "cycle_s_mean": float(np.mean([a.cycle_s for a in self.attempts])) if attempts else None,
        }


def _model_grasp(
    perception: BinPerception, frame: Frame, gripper: GripperConfig, failed_m: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray] | None:
    """The best-ranked sealing grasp (contact point, approach) in the camera frame, past the failed ones."""
    prediction = perception.predict(frame)
    points_m = perception.normalization.to_metres(prediction.observation.points)
    picks = prediction_picks(
        prediction, points_m, frame, perception.model_points_m(), perception.workspace, gripper, perception.camera_from_bin
    )
    for pick in picks:
        if pick.grasp is not None and untried(pick.grasp.point_m, failed_m, gripper.suction_radius_m):
            return pick.grasp.point_m, pick.grasp.approach
    return None


def untried(point_m: np.ndarray, failed_m: list[np.ndarray], cup_radius_m: float) -> bool:
    """Whether the grasp point ``point_m`` is clear of the grasp points that failed on this bin."""
    return all(np.linalg.norm(point_m - failed) > _FAILED_RADII * cup_radius_m for failed in failed_m)


def _kmeans_grasp(
    frame: Frame, workspace: np.ndarray, camera_from_bin: np.ndarray | None, parts: int, gripper: GripperConfig, failed_m: list[np.ndarray]
) -> tuple[np.ndarray, np.ndarray] | None:
    """K-means told the count: the cup straight down onto the highest cluster's point nearest the camera."""
    points_m = backproject(frame.depth_m, frame.K)
    cloud = points_m[in_workspace(points_m, workspace, camera_from_bin)]
    if len(cloud) < parts:
        return None
    labels = kmeans_labels(cloud, parts)
    tops = [cloud[labels == k][np.argmin(cloud[labels == k][:, 2])] for k in np.unique(labels)]
    for top in sorted(tops, key=lambda point: point[2]):
        if untried(top, failed_m, gripper.suction_radius_m):
            return top, np.array([0.0, 0.0, 1.0])
    return None


def pick_picture(frame: Frame, labels: np.ndarray, grasp_m: np.ndarray | None, cup_radius_m: float) -> np.ndarray:
    """The bin's depth in grey with its parts, and the cup's lip where it was sent, cropped to the parts."""
    picture = overlay_image(frame.depth_m, labels, frame.K)
    if grasp_m is not None:
        _, rows, cols = project_to_pixels(grasp_m[None], frame.K, frame.depth_m.shape)
        radius_px = max(2, int(round(frame.K[0, 0] * cup_radius_m / grasp_m[2])))
        for row, col in zip(rows, cols):
            cv2.circle(picture, (int(col), int(row)), radius_px, (255, 255, 255), 1, cv2.LINE_AA)
    rows, cols = np.nonzero(labels)
    if len(rows):
        margin = picture.shape[1] // 20
        picture = picture[max(rows.min() - margin, 0) : rows.max() + margin, max(cols.min() - margin, 0) : cols.max() + margin]
    return picture


def run_cell(
    perception: BinPerception | None,
    part: str,
    instances: int,
    config: Config,
    out: str | Path,
    method: str = "model",
    max_attempts: int = 40,
    seed: int = 0,
    strip_attempts: int = 24,
) -> PickReport:
    """Pour ``instances`` parts into the cell of ``config``, with its gripper, and pick until the bin is empty or ``max_attempts``
    have been made, by ``method`` (model: ``perception``'s grasps; kmeans: the baseline). Writes
    ``metrics.json``, ``report.md`` and ``strip.png`` (the bin before each of the first ``strip_attempts``
    picks, the true parts coloured and the cup's lip drawn where it was sent) into ``out``."""
    if method not in METHODS:
        raise ValueError(f"method {method!r}: expected one of {', '.join(METHODS)}")
    if method == "model" and (perception is None or not perception.can_count_parts):
        raise ValueError("method model needs a trained per-seed perception that measured the part, to count what is left in the bin")
    if instances < 1 or max_attempts < 1:
        raise ValueError(f"instances {instances} and max_attempts {max_attempts} must be at least 1")
    gripper = config.gripper
    report = PickReport(Path(part).stem, instances, method)
    rng = np.random.default_rng(seed)
    pictures, titles = [], []
    with BinSimulator(load_part(part), instances, config) as simulator:
        workspace, camera_from_bin = simulator.workspace, simulator.camera_from_bin
        if method == "model":
            perception.set_workspace(workspace, camera_from_bin)
            perception.set_instances(AUTO)
        simulator.simulate(rng)
        failed_m: list[np.ndarray] = []
        stuck = 0
        bar = tqdm(total=instances, desc=f"pick {report.part} ({method})", unit="part")
        for attempt in range(max_attempts):
            parts = len(simulator.bodies)
            if parts == 0:
                break
            start = time.perf_counter()
            sample = simulator.observe(rng)
            frame = Frame(sample.depth_m, sample.K, attempt, "camera", gt_labels=sample.labels)
            perceive_start = time.perf_counter()
            if method == "model":
                chosen = _model_grasp(perception, frame, gripper, failed_m)
            else:
                chosen = _kmeans_grasp(frame, workspace, camera_from_bin, parts, gripper, failed_m)
            perceive_ms = 1000 * (time.perf_counter() - perceive_start)
            if chosen is None:
                outcome = NO_GRASP
            else:
                outcome = execute_pick(simulator, *chosen, gripper)
                if outcome == "held":
                    failed_m.clear()
                    bar.update()
                else:
                    failed_m.append(chosen[0])
            report.attempts.append(Attempt(parts, outcome, perceive_ms, time.perf_counter() - start))
            if len(pictures) < strip_attempts:
                pictures.append(pick_picture(frame, sample.labels, None if chosen is None else chosen[0], gripper.suction_radius_m))
                titles.append(f"{attempt + 1}: {parts} left, {outcome}")
            if chosen is None:
                stuck += 1
                if stuck > SHAKES_BEFORE_HELP:
                    break  # shaking has not helped: a cell calls for help here
                simulator.shake(rng)
                report.shakes += 1
                failed_m.clear()
            else:
                stuck = 0
        bar.close()
    write_report(report, pictures, titles, out)
    return report


def execute_pick(simulator: BinSimulator, point_m: np.ndarray, approach: np.ndarray, gripper: GripperConfig) -> str:
    """The cup sent to ``point_m`` along ``approach`` (the camera frame): what it met (``held``, or why it holds
    nothing; :func:`bin_perception.sim.suction.cup_contact`). A part it holds is lifted out and the pile settles."""
    world_from_camera = simulator.world_from_camera
    point_w = transform_points(world_from_camera, np.asarray(point_m, dtype=np.float64)[None])[0]
    approach_w = world_from_camera[:3, :3] @ np.asarray(approach, dtype=np.float64)
    contact = cup_contact(
        simulator.surfaces(), simulator.world_poses(), point_w, approach_w, gripper.suction_radius_m, gripper.max_flatness_m
    )
    if contact.part is not None:
        simulator.remove(simulator.bodies[contact.part])
    return contact.reason


def write_report(report: PickReport, pictures: list[np.ndarray], titles: list[str], out: str | Path) -> dict:
    """``metrics.json`` (the summary and every attempt), ``report.md`` and, with pictures, ``strip.png`` into
    ``out``; the summary."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = report.summary()
    write_text(out / "metrics.json", json.dumps(summary | {"attempt_log": [asdict(a) for a in report.attempts]}, indent=1))
    write_text(out / "report.md", _report(summary))
    if pictures:
        pick_strip(pictures, titles, out / "strip.png")
    return summary


def _report(s: dict) -> str:
    per_part = f"{s['cups_per_part']:.2f}" if s["cups_per_part"] is not None else "-"
    outcomes = ", ".join(f"{k} {v}" for k, v in sorted(s["outcomes"].items()))
    return "\n".join(
        [
            f"# Picking cell: {s['part']} x {s['instances']}, {s['method']}",
            "",
            "| attempts | cups sent | shakes | picked | parts left | success rate (held per cup sent) | cups per part "
            "| perception p50 (ms) | cycle (s) |",
            "|---|---|---|---|---|---|---|---|---|",
            f"| {s['attempts']} | {s['cups_sent']} | {s['shakes']} | {s['picked']} | {s['parts_left']} | {s['success_rate']:.3f} | {per_part} "
            f"| {s['perceive_ms_p50']:.1f} | {s['cycle_s_mean']:.2f} |",
            "",
            f"Outcomes: {outcomes}.",
            "",
            "![the bin before each pick, the cup's contact circled](strip.png)",
            "",
        ]
    )
