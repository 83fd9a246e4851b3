import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bin_perception.lowres.fashion_mnist import load_fashion_mnist
from training.solver_bench.protocol import Trial, run_protocol
from training.solver_bench.registry import SUITES

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def _cli(*args):
    # As a user runs it from a checkout.
    result = subprocess.run(
        [sys.executable, "-m", "training.solver_bench", *map(str, args)], capture_output=True, text=True, timeout=300, cwd=REPO
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def _quick_run(suite, out, *extra):
    stdout = _cli("run", "--suite", suite, "--quick", "--out", out, *extra)
    assert f"{out / 'results.json'}" in stdout
    results = json.loads((out / "results.json").read_text())
    markdown = (out / "results.md").read_text()
    assert results["suite"] == suite and results["quick"] is True and results["wall_seconds"] > 0
    assert results["figures"]
    for name in results["figures"]:
        assert (out / name).read_bytes()[:8] == PNG
        assert f"]({name})" in markdown
    return results, markdown


def test_every_suite_is_registered():
    assert {"1d", "rosenbrock", "two-layer", "fashion-mnist", "pose"} <= set(SUITES)


def test_1d_only_alg1_finds_the_global_minimum_of_f2_and_f3(tmp_path):
    results, markdown = _quick_run("1d", tmp_path)
    f3 = results["problems"]["f3"]
    alg1 = f3["solvers"]["alg1"]
    assert abs(alg1["final_x"] - 11.086) < 0.05 and alg1["covered"] and alg1["samples"] <= 16
    assert abs(f3["global_minimizer"] - 11.0855) < 1e-3
    assert results["claim_only_alg1_finds_global_of_f2_f3"]["reproduced"] is True
    for name in ("f2", "f3"):
        stuck = results["problems"][name]["solvers"]["sgd"]
        assert abs(stuck["final_x"] - 4.913) < 0.01 and not stuck["reaches_global_minimum"]
    assert all(v["reaches_global_minimum"] for k, v in results["problems"]["f1"]["solvers"].items() if k != "alg1")
    assert "Claim: only Alg. 1 reaches the global minimum of f2 and f3: reproduced" in markdown


def test_rosenbrock_bpgrad_with_momentum_converges_near_the_optimum(tmp_path):
    results, markdown = _quick_run("rosenbrock", tmp_path)
    solvers = results["solvers"]
    assert solvers["bpgrad-m"]["distance_to_optimum"] < 0.1
    # Alg. 2 is deterministic here: it lands on the thesis's Table 3.1 points.
    for key in ("bpgrad", "bpgrad-m"):
        point = (solvers[key]["x1"], solvers[key]["x2"])
        assert math.dist(point, solvers[key]["thesis_x1_x2"]) < 0.02
    assert solvers["bpgrad-m"]["distance_to_optimum"] < solvers["bpgrad"]["distance_to_optimum"]
    assert "| BPGrad μ=0.9 | L = 500 |" in markdown


def test_two_layer_runs_the_protocol_in_worker_processes(tmp_path):
    results, markdown = _quick_run("two-layer", tmp_path, "--workers", 2)
    assert results["environment"]["workers"] == 2
    for key, rows in results["tuning"].items():
        assert [row["rate"] for row in rows] == results["grids"][key]
        finite = [row for row in rows if row["score"] is not None]
        assert results["chosen"][key] == min(finite, key=lambda row: row["score"])["rate"]
        assert [run["seed"] for run in results["runs"][key]] == [1, 2]
    for key in ("sgd-m", "bpgrad-m"):
        for run in results["runs"][key]:
            assert run["train_curve"][-1] < run["train_curve"][0]
    distances = results["distances"]["pairs"]["sgd-m/bpgrad-m"]
    assert len(distances) == 2 and all(0 < d < math.inf for d in distances)
    assert "10,302 parameters" in markdown


def test_fashion_mnist_trains_lenet_and_records_bpgrads_bounds(tmp_path):
    results, markdown = _quick_run("fashion-mnist", tmp_path)
    assert results["budget"]["batch"] == 100 and results["budget"]["weight_decay"] == 5e-4
    for key in ("bpgrad", "bpgrad-m"):
        for run in results["runs"][key]:
            assert run["final_test_error"] < 0.8  # ten classes: chance is 0.9
            for lower, upper in run["bounds"]:
                assert lower == pytest.approx(0.1 * upper)
            uppers = [upper for _, upper in run["bounds"]]
            assert uppers == sorted(uppers, reverse=True)
    assert "LeNet-5 (61,706 parameters)" in markdown


@pytest.mark.slow
def test_pose_trains_the_perception_model_with_each_solver_and_bpgrads_variants(tmp_path):
    results, markdown = _quick_run("pose", tmp_path)
    budget = results["budget"]
    assert (budget["part"], budget["instances"], budget["batch"]) == ("nut", 2, 4)
    for key, rows in results["tuning"].items():
        assert [row["rate"] for row in rows] == results["grids"][key]
        finite = [row for row in rows if row["score"] is not None]
        assert results["chosen"][key] == min(finite, key=lambda row: row["score"])["rate"]
    for runs in results["runs"].values():
        for run in runs:
            assert len(run["loss"]) == budget["steps"] and all(math.isfinite(loss) for loss in run["loss"])
            # Before training, then after every epoch; the score is the last evaluation's.
            assert [e["step"] for e in run["evaluations"]] == [i * run["steps_per_epoch"] for i in range(3)]
            assert run["validation_f1"] == run["evaluations"][-1]["f1"] and 0 < run["validation_f1"] <= 1
    # Training works: Adam's last epoch has a lower mean loss than its first, on every seed.
    for run in results["runs"]["adam"]:
        per_epoch = run["steps_per_epoch"]
        assert sum(run["loss"][-per_epoch:]) < sum(run["loss"][:per_epoch])
    # Without weight decay the norm-before-decay variant is the thesis's form, so it is not run again.
    variants = results["variants"]["runs"]
    assert set(variants) == {"thesis (Alg. 2)", "eta outside the momentum", "f = the epoch's running mean loss",
                             "all three (the official code)"}
    assert [run["seed"] for run in variants["eta outside the momentum"]] == [1, 2]
    assert "| BPGrad μ=0.9 | L = " in markdown and "| thesis (Alg. 2) |" in markdown


def test_lipschitz_verb_prints_the_distribution_and_draws_it(tmp_path):
    figure = tmp_path / "l.png"
    stdout = _cli("lipschitz", "--suite", "two-layer", "--copies", 30, "--percentile", 80, "--out", figure)
    assert "30 random initial copies, 435 pairs" in stdout
    suggested = float(stdout.split("suggested L (the 80th percentile): ")[1].split()[0])
    assert 0 < suggested < math.inf
    assert figure.read_bytes()[:8] == PNG


def test_the_protocol_tunes_on_validation_then_reruns_the_best_on_fresh_seeds():
    def trial(t: Trial):
        # The validation score is lowest at rate 0.1; rate 10 diverges (NaN).
        score = math.nan if t.rate == 10 else abs(math.log10(t.rate) + 1)
        return {"validation": score, "seed_seen": t.seed, "final": t.final}

    result = run_protocol(trial, {"a": [0.01, 0.1, 1.0, 10], "b": [0.5]}, "validation", seeds=[4, 5, 6])
    assert result.chosen == {"a": 0.1, "b": 0.5}
    assert [row["score"] for row in result.tuning["a"]] == [1.0, 0.0, 1.0, math.inf]
    assert result.tuning["b"] == []  # a setting the thesis gives is not tuned
    assert [(r["seed"], r["final"]) for r in result.runs["a"]] == [(4, True), (5, True), (6, True)]


def test_fashion_mnist_loader_reads_debians_files_and_fails_clearly_without_them(tmp_path):
    images, labels = load_fashion_mnist("test")
    assert tuple(images.shape) == (10_000, 1, 28, 28) and labels.bincount().tolist() == [1000] * 10
    with pytest.raises(FileNotFoundError, match="dataset-fashion-mnist"):
        load_fashion_mnist("train", root=tmp_path)
