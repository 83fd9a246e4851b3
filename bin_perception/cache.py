"""Where the package keeps what it builds once and reuses: meshes, decompositions, decoded frames, features."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$BIN_PERCEPTION_CACHE``, else ``$XDG_CACHE_HOME/bin_perception`` (``~/.cache/bin_perception``)."""
    default = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bin_perception"
    return Path(os.environ.get("BIN_PERCEPTION_CACHE", default))
