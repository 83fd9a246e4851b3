"""Decoded depth frames on disk: each bag is decoded once, then memory-mapped by every epoch and every rank.

What is cached is what the bag holds, not what the model makes of it: each
frame's depth image (metres, float32) and intrinsics K. Observations depend on
the workspace, the input size, the method and N, so a cache of them would go
stale with every change of the model config; decoding is the cost the cache
exists to remove, and observing a frame costs a few per cent of a training step.

An entry lives in ``$BIN_PERCEPTION_CACHE/frames/<bag name>-<key>/``, where the
key hashes the bag's bytes and everything else that changes the decoded result
(the depth and CameraInfo topics, the frame limit, this module's format). A
changed bag hashes to a new key, so an entry is never stale by content; an
entry that does not read back whole (a crash, a full disk) is rebuilt. Entries
are assembled under a temporary name and renamed into place when complete.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from ..cache import cache_dir
from ..config import TopicsConfig
from ..frame import Frame
from ..io.bag import BagReader, resolve_bag_path
from ..io.errors import BagError
from .data import topics_for

# Bump when what an entry holds, or how a frame is decoded, changes: old entries are then never read.
CACHE_FORMAT = 1
_HASH_CHUNK_BYTES = 1 << 22


def frames_cache_dir() -> Path:
    """``$BIN_PERCEPTION_CACHE/frames`` (default cache: ~/.cache/bin_perception)."""
    return cache_dir() / "frames"


def bag_content_hash(bag: str | os.PathLike) -> str:
    """BLAKE2b of every file of the bag directory, names and bytes, in name order."""
    path = resolve_bag_path(bag)
    files = sorted(p for p in path.rglob("*") if p.is_file())
    digest = hashlib.blake2b(digest_size=20)
    with tqdm(total=sum(f.stat().st_size for f in files), desc=f"hash {path.name}", unit="B", unit_scale=True, leave=False) as bar:
        for file in files:
            digest.update(str(file.relative_to(path)).encode() + b"\0")
            with open(file, "rb") as stream:
                while chunk := stream.read(_HASH_CHUNK_BYTES):
                    digest.update(chunk)
                    bar.update(len(chunk))
    return digest.hexdigest()


def cache_key(content_hash: str, topics: TopicsConfig, limit: int | None) -> str:
    """The entry's key: the bag's content and every option that changes what is decoded from it."""
    recipe = {"format": CACHE_FORMAT, "bag": content_hash, "depth": topics.depth, "camera_info": topics.camera_info, "limit": limit}
    return hashlib.blake2b(json.dumps(recipe, sort_keys=True).encode(), digest_size=12).hexdigest()


@dataclass(frozen=True)
class CachedBag:
    """One bag's decoded frames, memory-mapped: indexing reads one frame from disk."""

    bag: str
    entry: Path
    key: str
    depth_m: np.ndarray  # (F, H, W) float32 memmap, NaN where invalid
    K: np.ndarray  # (F, 3, 3) float64
    stamps_ns: np.ndarray  # (F,) int64
    frame_id: str
    skipped: int  # frames refused when the entry was built: undecodable, or of another size than the first

    def __len__(self) -> int:
        return len(self.stamps_ns)

    def __getitem__(self, index: int) -> Frame:
        return Frame(np.array(self.depth_m[index]), self.K[index], int(self.stamps_ns[index]), self.frame_id)


def open_bag(bag: str | os.PathLike, topics: TopicsConfig, limit: int | None, root: Path | None = None) -> CachedBag:
    """The bag's cache entry, built first if there is none or it does not read back whole."""
    root = frames_cache_dir() if root is None else root
    key = cache_key(bag_content_hash(bag), topics, limit)
    entry = root / f"{resolve_bag_path(bag).name}-{key}"
    cached = _read_entry(bag, entry, key)
    if cached is None:
        _build_entry(bag, topics, limit, entry, key)
        cached = _read_entry(bag, entry, key)
        if cached is None:
            raise BagError(f"bag {bag}: its frame cache {entry} does not read back after it was written")
    if cached.skipped:
        # Every run says so, not only the one that decoded the bag.
        tqdm.write(f"{bag}: skipped {cached.skipped} bad frames when it was decoded (see {entry / 'meta.json'}); {len(cached)} frames")
    return cached


def _read_entry(bag: str | os.PathLike, entry: Path, key: str) -> CachedBag | None:
    """The entry, or None where it is missing, of another format or incomplete (it is then removed)."""
    if not entry.is_dir():
        return None
    try:
        meta = json.loads((entry / "meta.json").read_text())
        count = int(meta["frames"])
        if meta["format"] != CACHE_FORMAT or meta["key"] != key:
            raise ValueError("written for another key or format")
        depth = np.load(entry / "depth.npy", mmap_mode="r")[:count]
        K = np.load(entry / "K.npy")[:count]
        stamps = np.load(entry / "stamps.npy")[:count]
        if not len(depth) == len(K) == len(stamps) == count:
            raise ValueError(f"holds fewer than its {count} frames")
        return CachedBag(str(bag), entry, key, depth, K, stamps, str(meta["frame_id"]), int(meta["skipped"]))
    except (OSError, ValueError, KeyError, TypeError) as error:
        tqdm.write(f"frame cache {entry}: unreadable ({error}); rebuilding it")
        shutil.rmtree(entry, ignore_errors=True)
        return None


def _build_entry(bag: str | os.PathLike, topics: TopicsConfig, limit: int | None, entry: Path, key: str) -> None:
    reader = BagReader(bag, topics, skip_bad_frames=True)
    capacity = len(reader) if limit is None else min(limit, len(reader))
    entry.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{entry.name}.", suffix=".partial", dir=entry.parent))
    try:
        depth = None
        K = np.zeros((capacity, 3, 3))
        stamps = np.zeros(capacity, dtype=np.int64)
        count, misshapen, frame_id = 0, 0, ""
        with tqdm(total=capacity, desc=f"decode {reader.path.name}", unit="frame") as bar:
            for frame in reader:
                if depth is None:
                    # The file is sized for every frame up front; the pages of skipped ones are never written.
                    depth = np.lib.format.open_memmap(staging / "depth.npy", "w+", np.float32, (capacity, *frame.depth_m.shape))
                    frame_id = frame.frame_id
                if frame.depth_m.shape != depth.shape[1:]:
                    misshapen += 1
                else:
                    depth[count], K[count], stamps[count] = frame.depth_m, frame.K, frame.stamp_ns
                    count += 1
                bar.update()
                if count == capacity:
                    break
        if count == 0:
            raise BagError(f"bag {reader.path}: no decodable depth frame on {topics.depth} (skipped {reader.skipped} bad frames)")
        depth.flush()
        del depth
        np.save(staging / "K.npy", K[:count])
        np.save(staging / "stamps.npy", stamps[:count])
        meta = {
            "format": CACHE_FORMAT, "key": key, "bag": str(reader.path), "frames": count, "frame_id": frame_id,
            "skipped": reader.skipped + misshapen, "undecodable": reader.skipped, "other_size": misshapen,
        }
        (staging / "meta.json").write_text(json.dumps(meta, indent=1))
        try:
            os.rename(staging, entry)
        except OSError:
            # Another process (a rank on a shared disk) finished the same entry first; theirs is as good.
            if not (entry / "meta.json").is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)


class CachedFrames(Sequence[Frame]):
    """The frames of several bags, one index space, each bag memory-mapped from its cache entry."""

    def __init__(self, bags: Sequence[CachedBag]) -> None:
        self.bags = list(bags)
        self._ends = np.cumsum([len(b) for b in self.bags]).tolist()

    def __len__(self) -> int:
        return self._ends[-1] if self._ends else 0

    def __getitem__(self, index: int) -> Frame:
        if not 0 <= index < len(self):
            raise IndexError(f"frame {index} of {len(self)}")
        bag = bisect_right(self._ends, index)
        return self.bags[bag][index - (self._ends[bag - 1] if bag else 0)]

    @property
    def keys(self) -> list[str]:
        """The cache keys of the bags, in order: what the frames are, whatever the bags' paths."""
        return [b.key for b in self.bags]


def open_frames(bags: Sequence[str], topics: TopicsConfig, limit_per_bag: int | None, root: Path | None = None) -> CachedFrames:
    """Every bag's frames from its cache entry, each built on first use; simulated bags on the simulator's topics."""
    return CachedFrames([open_bag(bag, topics_for(bag, topics), limit_per_bag, root) for bag in bags])
