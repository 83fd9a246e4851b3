"""docs/RESULTS.md's generated section: rendered from table.json, stamped, and spliced between its markers only."""

import datetime
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from training import results, table

HAND_WRITTEN_HEAD = "# Results\n\nNotes written by hand, above the generated section.\n\n"
HAND_WRITTEN_TAIL = "\n## Notes\n\nAn earlier version did something else; this stays.\n"
STALE = "| nut | 2 | 0.100 (0.10 / 0.10) |"


def _scores(f1: float, precision: float, recall: float) -> dict:
    return {"f1": f1, "precision": precision, "recall": recall}


def _table() -> dict:
    """A table as training.table writes it, read back from JSON (so its means are keyed by strings)."""
    columns = ["model", "model_transfer", "whole_image", "kmeans"]
    rows = [
        {"part": "nut", "instances": 2, "model": _scores(0.987, 0.99, 0.98), "model_transfer": _scores(0.981, 0.98, 0.98),
         "whole_image": _scores(0.862, 0.89, 0.85), "kmeans": _scores(0.942, 0.97, 0.92)},
        {"part": "bolt", "instances": 2, "model": _scores(0.982, 0.98, 0.99), "model_transfer": _scores(0.979, 0.97, 0.99),
         "whole_image": _scores(0.706, 0.71, 0.71), "kmeans": _scores(0.741, 0.73, 0.75)},
    ]
    mean = {2: {"model": 0.985, "model_transfer": 0.970, "whole_image": 0.778, "kmeans": 0.824}}
    return json.loads(json.dumps({"columns": columns, "rows": rows, "mean": mean, "settings": {"train_minutes": 4.0}}))


def _results_md(tmp_path: Path) -> Path:
    path = tmp_path / "RESULTS.md"
    path.write_text(HAND_WRITTEN_HEAD + results.BEGIN_MARKER + "\n" + STALE + "\n" + results.END_MARKER + "\n" + HAND_WRITTEN_TAIL)
    return path


def _generated(text: str) -> str:
    return text.split(results.BEGIN_MARKER, 1)[1].split(results.END_MARKER, 1)[0]


def test_regenerating_replaces_the_section_and_keeps_the_hand_written_text(tmp_path):
    path = _results_md(tmp_path)
    results.write_results_md(path, _table(), commit="abc1234", run_date=datetime.date(2026, 12, 1), source="runs/table/table.json")
    text = path.read_text()
    assert text.startswith(HAND_WRITTEN_HEAD + results.BEGIN_MARKER)
    assert text.endswith(results.END_MARKER + "\n" + HAND_WRITTEN_TAIL)
    assert text.count(results.BEGIN_MARKER) == 1 and text.count(results.END_MARKER) == 1
    section = _generated(text)
    assert STALE not in section
    assert "from `runs/table/table.json` at commit `abc1234` on 2026-12-01." in section
    assert "train_minutes 4" in section
    assert "| nut | 2 | 0.987 (0.99 / 0.98) | 0.981 (0.98 / 0.98) | 0.862 (0.89 / 0.85) | 0.942 (0.97 / 0.92) |" in section
    assert "| **mean** | 2 | **0.985** | **0.970** | **0.778** | **0.824** |" in section
    assert results.COLUMN_TITLES["whole_image"] in section

    # A second run changes the stamp, and nothing outside the markers.
    results.write_results_md(path, _table(), commit="def5678", run_date=datetime.date(2026, 12, 2))
    again = path.read_text()
    assert "at commit `def5678` on 2026-12-02." in again and "abc1234" not in again
    assert again.startswith(HAND_WRITTEN_HEAD) and again.endswith(HAND_WRITTEN_TAIL)
    assert not list(tmp_path.glob(".*tmp*")), "the atomic write left its temporary file"


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git to know the checkout's commit")
def test_the_default_stamp_is_this_checkout_s_commit_and_today(tmp_path):
    path = tmp_path / "RESULTS.md"
    results.write_results_md(path, _table())
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=results.REPO_ROOT, capture_output=True, text=True, check=True)
    section = _generated(path.read_text())
    assert f"at commit `{head.stdout.strip()}" in section
    assert f"on {datetime.date.today().isoformat()}." in section


def test_a_file_without_markers_gets_the_section_appended(tmp_path):
    path = tmp_path / "RESULTS.md"
    path.write_text("# Results\n\nOnly hand-written text so far.")
    results.write_results_md(path, _table(), commit="abc1234", run_date=datetime.date(2026, 12, 1))
    text = path.read_text()
    assert text.startswith("# Results\n\nOnly hand-written text so far.\n\n" + results.BEGIN_MARKER)
    assert text.endswith(results.END_MARKER + "\n")


@pytest.mark.parametrize("broken", [results.BEGIN_MARKER + "\n", results.END_MARKER + "\n" + results.BEGIN_MARKER + "\n"])
def test_unpaired_markers_are_refused_and_the_file_is_left_alone(tmp_path, broken):
    path = tmp_path / "RESULTS.md"
    original = HAND_WRITTEN_HEAD + broken + HAND_WRITTEN_TAIL
    path.write_text(original)
    with pytest.raises(ValueError, match="expected one"):
        results.write_results_md(path, _table(), commit="abc1234", run_date=datetime.date(2026, 12, 1))
    assert path.read_text() == original


def test_benchmark_json_is_rendered_figure_by_figure(tmp_path):
    bench = tmp_path / "bench_node.json"
    bench.write_text(json.dumps({"latency_p50_ms": 24.5, "load": {"dropped": [387, 12]}, "runs": [{"frames_per_s": 20.3}]}))
    path = tmp_path / "RESULTS.md"
    results.write_results_md(path, _table(), results.load_benchmarks([bench]), commit="abc1234", run_date=datetime.date(2026, 12, 1))
    section = _generated(path.read_text())
    assert "**bench_node.json**" in section
    assert "| `latency_p50_ms` | 24.5 |" in section
    assert "| `load.dropped` | 387, 12 |" in section
    assert "| `runs[0].frames_per_s` | 20.3 |" in section
    with pytest.raises(FileNotFoundError, match="missing.json"):
        results.load_benchmarks([tmp_path / "missing.json"])


def _finished_table_run(out: Path, part: str, n: int) -> None:
    """The outputs of every step of a table at one part and N, so that training.table has nothing left to run."""
    for split in ("train", "test"):
        (out / "bags" / f"{part}_n{n}_{split}").mkdir(parents=True)
    for method in ("per_seed", "whole_image"):
        checkpoint = out / method / f"{part}_n{n}" / "checkpoint.pt"
        checkpoint.parent.mkdir(parents=True)
        checkpoint.write_bytes(b"")
    model = {"model": _scores(0.987, 0.99, 0.98), "model_transfer": _scores(0.981, 0.98, 0.98), "kmeans": _scores(0.942, 0.97, 0.92),
             "spectral": _scores(0.985, 0.98, 1.0), "dbscan": _scores(0.954, 0.97, 0.94)}
    whole_image = {"model": _scores(0.862, 0.89, 0.85), "dbscan": _scores(0.954, 0.97, 0.94)}
    for name, methods in ((f"{part}_n{n}", model), (f"{part}_n{n}_whole_image", whole_image)):
        report = out / "reports" / name / "metrics.json"
        report.parent.mkdir(parents=True)
        report.write_text(json.dumps({"methods": methods}))


def test_the_table_command_writes_the_section(tmp_path):
    out = tmp_path / "table"
    _finished_table_run(out, "nut", 2)
    path = _results_md(tmp_path)
    bench = tmp_path / "bench_simulate.json"
    bench.write_text(json.dumps([{"part": "nut", "workers": 1, "scenes_per_s": 12.0}]))
    args = ["--out", str(out), "--parts", "nut", "--instances", "2", "--per-seed-train-n", "2", "--train-minutes", "4", "--jobs", "1"]

    with pytest.raises(SystemExit):  # a missing benchmark file stops the command before it builds anything
        table.main(args + ["--results-md", str(path), "--bench-json", str(tmp_path / "missing.json")])
    assert STALE in path.read_text()

    table.main(args + ["--results-md", str(path), "--bench-json", str(bench)])
    text = path.read_text()
    assert text.startswith(HAND_WRITTEN_HEAD) and text.endswith(HAND_WRITTEN_TAIL)
    section = _generated(text)
    assert STALE not in section
    assert f"from `{out / 'table.json'}` at commit `" in section
    assert "| nut | 2 | 0.987 (0.99 / 0.98) | 0.981 (0.98 / 0.98) | 0.862 (0.89 / 0.85) | 0.942 (0.97 / 0.92) |" in section
    assert "train_minutes 4" in section and "| `[0].scenes_per_s` | 12 |" in section
    assert json.loads((out / "table.json").read_text())["settings"]["per_seed_train_n"] == 2


def test_the_pose_table_shows_the_poses_on_the_true_segments_beside_the_models_own():
    rows = _table()["rows"]
    poses = {"add_recall": 0.5, "ar": 0.6, "rotation_median_deg": 12.0}
    on_truth = {"true_segments_add_recall": 0.75, "true_segments_ar": 0.8, "true_segments_rotation_median_deg": 4.0}
    for row in rows:
        row["model"].update(poses, **on_truth)
    text = results.pose_table({"columns": ["model", "kmeans"], "rows": rows}, {"model": "ours"})
    header, _, *lines = text.splitlines()
    assert header == (
        "| part | N | ours: ADD(-S) < 0.1 d / AR / median rotation (deg) | "
        "ours on the true segments: ADD(-S) < 0.1 d / AR / median rotation (deg) |"
    )
    assert lines[0] == "| nut | 2 | 0.500 / 0.600 / 12.0 | 0.750 / 0.800 / 4.0 |"


def test_the_table_keeps_the_poses_on_the_true_segments_and_the_top_pick(tmp_path):
    out = tmp_path / "table"
    _finished_table_run(out, "nut", 2)
    report = out / "reports" / "nut_n2" / "metrics.json"
    methods = json.loads(report.read_text())["methods"]
    methods["model"].update(add_recall=0.5, ar=0.6, rotation_median_deg=12.0, top_pick=0.95,
                            true_segments_add_recall=0.75, true_segments_ar=0.8, true_segments_rotation_median_deg=4.0)
    report.write_text(json.dumps({"methods": methods}))

    model = table.collect(out, ["nut"], [2])["rows"][0]["model"]
    assert model["top_pick"] == 0.95
    assert (model["true_segments_add_recall"], model["true_segments_ar"], model["true_segments_rotation_median_deg"]) == (0.75, 0.8, 4.0)
    assert "0.500 / 0.600 / 12.0 | 0.750 / 0.800 / 4.0" in table.markdown(table.collect(out, ["nut"], [2]))
