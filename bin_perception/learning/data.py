"""Frames from bags, turned into what training and evaluation consume."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np
from tqdm import tqdm

from ..config import Config, TopicsConfig
from ..frame import Frame
from ..geometry import parse_bin_pose
from ..io.bag import META_PART, BagReader, read_metadata
from ..io.errors import BagError


def topics_for(bag: str, topics: TopicsConfig) -> TopicsConfig:
    """The topics to read ``bag`` with: ``topics``, unless the simulator wrote the bag without them on its own defaults.

    So that simulated bags mix with recorded ones whose topics ``--depth-topic`` and ``--info-topic`` name.
    """
    metadata = read_metadata(bag)
    recorded = {t["topic_metadata"]["name"] for t in metadata.get("topics_with_message_count", [])}
    simulated = META_PART in (metadata.get("custom_data") or {})
    if topics.depth not in recorded and simulated and TopicsConfig().depth in recorded:
        return TopicsConfig()
    return topics


def resolve_workspace(
    explicit: np.ndarray | None, config: Config, bags: Sequence[str], explicit_bin_pose: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray | None]:
    """The workspace box and its frame (the bin's (4, 4) in the camera's, or None for the camera's own): the
    flags, else the config, else what the first simulated bag records. A box and its frame come from one source."""
    if explicit is not None:
        return np.asarray(explicit, dtype=np.float64).reshape(2, 3), explicit_bin_pose
    if config.workspace is not None:
        bin_pose = None if config.bin_pose is None else parse_bin_pose(config.bin_pose)
        return np.asarray(config.workspace, dtype=np.float64).reshape(2, 3), bin_pose
    for bag in bags:
        reader = BagReader(bag, topics_for(bag, config.topics))
        workspace = reader.workspace()
        if workspace is not None:
            return workspace, reader.bin_pose()
    raise BagError(
        f"no workspace: none of {', '.join(map(str, bags))} records one; give --workspace xmin,ymin,zmin,xmax,ymax,zmax"
    )


def iter_frames(bags: Sequence[str], topics: TopicsConfig, limit_per_bag: int | None, desc: str) -> Iterator[Frame]:
    """Frames of every bag in turn, bad frames skipped (and reported), with a progress bar."""
    for bag in bags:
        reader = BagReader(bag, topics_for(bag, topics), skip_bad_frames=True)
        total = len(reader) if limit_per_bag is None else min(limit_per_bag, len(reader))
        yield from tqdm(itertools.islice(reader, total), total=total, desc=f"{desc} {reader.path.name}", unit="frame")
        if reader.skipped:
            tqdm.write(f"{reader.path}: skipped {reader.skipped} bad frames")
