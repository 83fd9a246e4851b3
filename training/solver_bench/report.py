"""What a suite hands back, and how it lands on disk: results.json, results.md, written atomically."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Report:
    """A suite's results: ``data`` becomes results.json, ``markdown`` results.md, ``figures`` are its PNGs."""

    title: str
    data: dict[str, Any]
    markdown: str
    figures: list[Path] = field(default_factory=list)


def write_text_atomically(path: Path, text: str) -> None:
    """Write ``text`` to a hidden temporary file beside ``path``, then rename it into place."""
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(text)
    os.replace(tmp.name, path)


def write_report(report: Report, out: Path) -> tuple[Path, Path]:
    """results.json and results.md in ``out``; returns their paths."""
    json_path, markdown_path = out / "results.json", out / "results.md"
    payload = {"title": report.title, **report.data, "figures": [str(p.name) for p in report.figures]}
    write_text_atomically(json_path, json.dumps(_finite(payload), indent=2) + "\n")
    figures = "".join(f"\n![{p.stem}]({p.name})\n" for p in report.figures)
    write_text_atomically(markdown_path, f"# {report.title}\n\n{report.markdown.strip()}\n{figures}")
    return json_path, markdown_path


def _finite(value: Any) -> Any:
    """JSON has no NaN or infinity: a diverged run's numbers become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def number(value: float | None, digits: int = 3) -> str:
    """A table cell: ``digits`` significant figures, or "diverged" for a non-finite value."""
    if value is None or not math.isfinite(value):
        return "diverged"
    return f"{value:.{digits}g}"


def median_range(values: Sequence[float], digits: int = 3, scale: float = 1.0) -> str:
    """"median (min-max)" of a metric over seeds; seeds that diverged are counted, not averaged."""
    finite = sorted(v * scale for v in values if v is not None and math.isfinite(v))
    diverged = len(values) - len(finite)
    if not finite:
        return f"diverged in {diverged}/{len(values)} seeds"
    cell = f"{number(_median(finite), digits)} ({number(finite[0], digits)}-{number(finite[-1], digits)})"
    return cell if not diverged else f"{cell}, {diverged}/{len(values)} diverged"


def _median(sorted_values: Sequence[float]) -> float:
    middle = len(sorted_values) // 2
    if len(sorted_values) % 2:
        return sorted_values[middle]
    return (sorted_values[middle - 1] + sorted_values[middle]) / 2
