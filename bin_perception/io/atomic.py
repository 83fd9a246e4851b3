"""Files that appear whole or not at all: written under a temporary name beside them, then renamed."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """A temporary name beside ``path`` to write to, renamed onto ``path`` if the block succeeds.

    The rename is atomic on one file system, so a reader, or a run that crashes mid-write, sees the
    old file or the new one, never half of one. A block that raises leaves no temporary file behind.
    The temporary name keeps the suffix, for writers that choose the format by it.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """``path`` holding ``text``, written atomically."""
    with replacing(path) as tmp:
        tmp.write_text(text)
    return Path(path)
