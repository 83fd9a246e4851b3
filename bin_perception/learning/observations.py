"""Each training frame observed once: the seeds, crops and clouds that every later epoch reads again.

Observing a frame (back-projection, seeds, crops) costs several milliseconds, as much as the frame's
share of a training step. An observation depends only on the frame and on the model's workspace,
normalisation, observation settings and measured part, all fixed for a run once the part is measured,
so a run keeps them by frame index. Memory is bounded: past ``budget_bytes`` the frames are observed
again whenever a batch draws them.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..frame import Frame
from ..model import BinPerception
from ..model.observation import Observation


def observation_nbytes(observation: Observation) -> int:
    arrays = (observation.points, observation.pixels, observation.image, observation.seeds, observation.crops, observation.centres)
    return sum(a.nbytes for a in arrays if a is not None)


class ObservationCache:
    """``perception.observe(frames[i])``, computed at the first request for ``i`` and kept while the budget lasts.

    Build it after the model's part is measured: the seeds depend on the measure.
    """

    def __init__(self, perception: BinPerception, frames: Sequence[Frame], budget_bytes: int) -> None:
        self._perception = perception
        self._frames = frames
        self._budget_bytes = budget_bytes
        self._kept: dict[int, Observation] = {}
        self.nbytes = 0
        self.observed = 0  # calls to observe, kept or not

    def __getitem__(self, index: int) -> Observation:
        index = int(index)
        kept = self._kept.get(index)
        if kept is not None:
            return kept
        observation = self._perception.observe(self._frames[index])
        self.observed += 1
        size = observation_nbytes(observation)
        if self.nbytes + size <= self._budget_bytes:
            self._kept[index] = observation
            self.nbytes += size
        return observation

    def __len__(self) -> int:
        return len(self._kept)
