"""The experiment drivers really simulate, train and evaluate, through the CLI, on tiny budgets."""

import json

import pytest

from training import ablations, table


@pytest.mark.slow
def test_the_table_fills_every_cell_and_resumes_without_work(tmp_path):
    args = ["--out", str(tmp_path), "--parts", "nut", "--instances", "2", "--per-seed-train-n", "2",
            "--train-scenes", "8", "--test-scenes", "12", "--train-minutes", "0.05", "--jobs", "2"]
    table.main(args)
    result = json.loads((tmp_path / "table.json").read_text())
    (row,) = result["rows"]
    assert row["part"] == "nut" and row["instances"] == 2
    # The CPU recipe segments by the seeds; the label transfer is scored beside them.
    assert result["columns"] == ["model", "model_transfer", "whole_image", "kmeans", "spectral", "dbscan"]
    for method in result["columns"]:
        assert 0 < row[method]["f1"] <= 1
    assert "| nut | 2 |" in (tmp_path / "table.md").read_text()
    checkpoint = tmp_path / "per_seed" / "nut_n2" / "checkpoint.pt"
    before = checkpoint.stat().st_mtime_ns
    table.main(args)  # everything exists: nothing is trained again
    assert checkpoint.stat().st_mtime_ns == before


@pytest.mark.slow
def test_ablations_change_one_switch_each(tmp_path):
    ablations.main(["--out", str(tmp_path), "--instances", "2", "--train-scenes", "8", "--test-scenes", "12",
                    "--train-minutes", "0.05", "--variants", "base", "hpr_none"])
    rows = json.loads((tmp_path / "ablations.json").read_text())
    assert set(rows) == {"base", "hpr_none"} and all(0 < row["f1"] <= 1 for row in rows.values())
    configs = {name: (tmp_path / "configs" / f"{name}.yaml").read_text() for name in rows}
    assert "hpr_exponent: null" in configs["hpr_none"] and "hpr_exponent: 2.9" in configs["base"]
