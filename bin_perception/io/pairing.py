"""Messages of two streams paired by stamp: a depth image and the CameraInfo it was taken with.

A camera driver stamps each image and its CameraInfo alike, but publishes them on two topics, so
either may arrive first. As image_pipeline's camera subscriber does, an image is paired by its stamp,
not by its size or by what came last; unlike an exact-time policy, a stamp within ``tolerance_ns``
pairs too, for drivers that stamp the two a little apart.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import Generic, TypeVar

Item = TypeVar("Item")


class StampPairing(Generic[Item]):
    """The latest ``depth`` items of one stream by stamp, and the one nearest to a stamp of the other.

    Thread-safe: one thread may ``add`` while another waits in ``nearest``.
    """

    def __init__(self, depth: int = 32) -> None:
        self._items: deque[tuple[int, Item]] = deque(maxlen=depth)
        self._changed = threading.Condition()

    def add(self, stamp_ns: int, item: Item) -> None:
        with self._changed:
            self._items.append((int(stamp_ns), item))
            self._changed.notify_all()

    def nearest(self, stamp_ns: int, tolerance_ns: int, wait_s: float = 0.0) -> tuple[Item | None, int | None]:
        """The item whose stamp is nearest to ``stamp_ns`` and within ``tolerance_ns`` of it, waiting up to
        ``wait_s`` for one to arrive; else None. Also the smallest stamp difference seen (ns), None when empty."""
        with self._changed:
            if wait_s > 0:
                self._changed.wait_for(lambda: self._within(stamp_ns, tolerance_ns), wait_s)
            found, gap_ns = self._nearest(stamp_ns)
            return (found if self._within(stamp_ns, tolerance_ns) else None), gap_ns

    def __len__(self) -> int:
        with self._changed:
            return len(self._items)

    def _within(self, stamp_ns: int, tolerance_ns: int) -> bool:
        gap_ns = self._nearest(stamp_ns)[1]
        return gap_ns is not None and gap_ns <= tolerance_ns

    def _nearest(self, stamp_ns: int) -> tuple[Item | None, int | None]:
        if not self._items:
            return None, None
        gap_ns, item = min(((abs(s - stamp_ns), item) for s, item in self._items), key=lambda pair: pair[0])
        return item, gap_ns
