"""The low-resolution classifier (thesis ch. 5): protocol, features, pseudo-labels, transfer net, estimator, CLI."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch

from bin_perception.lowres.backbone import load_backbone
from bin_perception.lowres.datasets import sim_parts
from bin_perception.lowres.estimator import (
    LowResClassifier,
    ModelFileError,
    load_classifier,
    save_classifier,
)
from bin_perception.lowres.evaluation import per_class_ap, spread
from bin_perception.lowres.experiment import dataset_features
from bin_perception.lowres.features import extract_features, feature_cache_dir
from bin_perception.lowres.images import ResolutionProtocol, rgb_batch
from bin_perception.lowres.linear import fit_linear_svm, fit_softmax_head
from bin_perception.lowres.pseudo_labels import fit_centroids, nearest_centroid
from bin_perception.lowres.serving import ImageClassifier
from bin_perception.lowres.transfer_net import (
    TransferTraining,
    train_transfer_net,
    transfer,
)
from bin_perception.sim.parts import part_names
from bin_perception.sim.renders import PartRenderer, render_parts

SMALL = TransferTraining(iterations=80, lr_step_iterations=40)


def _cli(*args, check=True, timeout=300):
    exe = shutil.which("bin-perception") or f"{sys.prefix}/bin/bin-perception"
    result = subprocess.run([exe, *map(str, args)], capture_output=True, text=True, timeout=timeout, check=False)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def _synthetic(n_per_class=60, classes=4, dim=32, lr_noise=1.5, seed=0):
    """HR features: tight class clusters; LR features: the same points, blurred by heavy noise."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0, 3, (classes, dim))
    labels = np.repeat(np.arange(classes), n_per_class)
    hr = (centres[labels] + rng.normal(0, 0.5, (len(labels), dim))).astype(np.float32)
    lr = (hr + rng.normal(0, lr_noise, hr.shape)).astype(np.float32)
    return hr, lr, labels


@pytest.fixture(scope="module")
def renders():
    return sim_parts(12, seed=0, progress=False)


@pytest.fixture(scope="module")
def backbone():
    return load_backbone()


@pytest.fixture(scope="module")
def fitted(renders, backbone, tmp_path_factory):
    features = dataset_features(backbone, renders, progress=False)
    model = LowResClassifier(
        renders.class_names, k=10, hidden_dim=256, training=SMALL, backbone_key=backbone.key, protocol=renders.protocol, progress=False
    ).fit(features.lr_train, renders.train_labels, features.hr_train)
    path = tmp_path_factory.mktemp("lowres") / "model.pt"
    save_classifier(path, model)
    return model, features, path


# The resolution protocol.


def test_hr_view_of_a_224_image_is_the_image_and_lr_view_loses_fine_detail():
    protocol = ResolutionProtocol(224, 32)
    checkers = ((np.indices((224, 224)).sum(axis=0) % 2) * 255).astype(np.uint8)
    image = np.repeat(checkers[None, ..., None], 3, axis=-1)
    hr, lr = protocol.view(image, "hr"), protocol.view(image, "lr")
    assert hr.shape == lr.shape == (1, 3, 224, 224)
    assert torch.equal(hr, rgb_batch(image))
    # One-pixel checkers are far above the 32 px Nyquist limit: the anti-aliased LR view is flat grey.
    assert lr.std() < 5.0 and abs(lr.mean() - 127.5) < 5.0
    assert hr.std() > 100.0


def test_views_keep_a_constant_image_constant_and_take_grey_images():
    protocol = ResolutionProtocol(224, 8)
    grey = np.full((2, 28, 28), 90, dtype=np.uint8)
    for resolution in ("hr", "lr"):
        view = protocol.view(grey, resolution)
        assert view.shape == (2, 3, 224, 224)
        assert torch.allclose(view, torch.full_like(view, 90.0), atol=1e-3)


@pytest.mark.parametrize(
    ("images", "message"),
    [
        (np.zeros((1, 8, 8, 3), dtype=np.float32), "expected uint8 pixels"),
        (np.zeros((1, 8, 8, 4), dtype=np.uint8), "got shape (1, 8, 8, 4)"),
        (np.zeros((0, 8, 8, 3), dtype=np.uint8), "empty batch or image"),
    ],
)
def test_bad_images_are_refused_by_name(images, message):
    with pytest.raises(ValueError, match="images: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        ResolutionProtocol().view(images, "lr")


def test_bad_protocols_and_resolutions_are_refused():
    with pytest.raises(ValueError, match="low_px=300"):
        ResolutionProtocol(224, 300)
    with pytest.raises(ValueError, match="resolution 'mid'"):
        ResolutionProtocol().view(np.zeros((1, 8, 8, 3), np.uint8), "mid")


# Backbone features and their cache.


def test_features_are_cached_by_image_content(backbone, tmp_path, monkeypatch):
    monkeypatch.setenv("BIN_PERCEPTION_CACHE", str(tmp_path))
    images = np.random.default_rng(0).integers(0, 256, (3, 40, 40, 3), dtype=np.uint8)
    protocol = ResolutionProtocol(64, 16)
    first = extract_features(backbone, images, protocol, "lr", progress=False)
    folder = feature_cache_dir(backbone, protocol, "lr")
    assert first.shape == (3, 1280) and len(list(folder.glob("*.npy"))) == 3
    again = extract_features(backbone, images[::-1], protocol, "lr", progress=False)
    np.testing.assert_array_equal(again, first[::-1])
    uncached = extract_features(backbone, images, protocol, "lr", use_cache=False, progress=False)
    np.testing.assert_allclose(uncached, first, rtol=1e-4, atol=1e-4)
    # Another view of the same images is another cache entry, never a stale hit.
    hr = extract_features(backbone, images, protocol, "hr", progress=False)
    assert not np.allclose(hr, first)


def test_backbone_is_frozen_and_stays_in_eval_mode(backbone):
    backbone.train()
    assert not backbone.training and not any(p.requires_grad for p in backbone.parameters())


def test_unknown_or_unweighted_backbones_are_refused(tmp_path):
    with pytest.raises(ValueError, match="backbone 'vgg16'"):
        load_backbone("vgg16")
    with pytest.raises(ValueError, match="needs a local weights file"):
        load_backbone("resnet50")
    with pytest.raises(FileNotFoundError, match="missing.pth: no such file"):
        load_backbone("resnet50", tmp_path / "missing.pth")


@pytest.mark.slow
def test_resnet50_from_a_local_state_dict_gives_2048_d_features(tmp_path):
    import torchvision

    weights = tmp_path / "resnet50.pth"
    torch.save(torchvision.models.resnet50(weights=None).state_dict(), weights)
    resnet = load_backbone("resnet50", weights)
    features = resnet(torch.rand(2, 3, 64, 64) * 255)
    assert features.shape == (2, 2048) and resnet.key.startswith("resnet50-")


# Pseudo-labels, transfer net, linear classifiers.


def test_pseudo_labels_come_from_hr_clusters_and_nearest_centroids():
    hr, lr, labels = _synthetic()
    centroids = fit_centroids(hr, k=4, seed=0)
    assigned = nearest_centroid(hr, centroids)
    # Tight, well separated clusters: k-means recovers the classes up to a permutation.
    assert all(len(np.unique(assigned[labels == c])) == 1 for c in range(4))
    brute = np.argmin(((lr[:, None, :] - centroids[None]) ** 2).sum(-1), axis=1)
    np.testing.assert_array_equal(nearest_centroid(lr, centroids), brute)
    with pytest.raises(ValueError, match="k=500 clusters"):
        fit_centroids(hr, k=500, seed=0)
    with pytest.raises(ValueError, match="do not match features of dimension 32"):
        nearest_centroid(hr, centroids[:, :5])


@pytest.mark.parametrize("optimizer", ["sgd", "bpgrad"])
def test_transfer_net_learns_pseudo_labels_well_above_chance(optimizer):
    hr, lr, labels = _synthetic(lr_noise=0.5)
    centroids = fit_centroids(hr, k=4, seed=0)
    targets = nearest_centroid(hr, centroids)
    train, test = np.arange(len(labels)) % 4 != 0, np.arange(len(labels)) % 4 == 0
    training = TransferTraining(iterations=150, lr_step_iterations=100, batch_size=64, optimizer=optimizer, lipschitz=20.0)
    net, losses = train_transfer_net(lr[train], targets[train], 4, 64, training, seed=0, progress=False)
    accuracy = (transfer(net, lr[test]).argmax(axis=1) == targets[test]).mean()
    assert losses[-10:].mean() < 0.5 * losses[0]
    assert accuracy > 0.8  # chance is 0.25


def test_transfer_net_is_seeded_without_touching_the_global_generator():
    hr, lr, _ = _synthetic(n_per_class=10)
    targets = nearest_centroid(hr, fit_centroids(hr, 4, seed=0))
    torch.manual_seed(123)
    expected = torch.rand(1)
    torch.manual_seed(123)
    a, _ = train_transfer_net(lr, targets, 4, 16, SMALL, seed=5, progress=False)
    assert torch.equal(torch.rand(1), expected)
    b, _ = train_transfer_net(lr, targets, 4, 16, SMALL, seed=5, progress=False)
    np.testing.assert_array_equal(transfer(a, lr), transfer(b, lr))


def test_linear_classifiers_score_every_class_and_refuse_missing_ones():
    hr, _, labels = _synthetic()
    for scorer in (fit_linear_svm(hr, labels, 4), fit_softmax_head(hr, labels, 4)):
        assert (scorer.decision(hr).argmax(axis=1) == labels).mean() > 0.95
    two = labels < 2
    scores = fit_linear_svm(hr[two], labels[two], 2).decision(hr[two])
    assert scores.shape == (two.sum(), 2) and (scores.argmax(axis=1) == labels[two]).mean() > 0.95
    with pytest.raises(ValueError, match=r"cover classes \[0, 1, 2, 3\]; every class in \[0, 5\)"):
        fit_linear_svm(hr, labels, 5)


def test_ap_is_100_for_perfect_scores_and_refuses_absent_classes():
    labels = np.array([0, 1, 2, 1])
    np.testing.assert_allclose(per_class_ap(np.eye(3)[labels], labels, 3), [100.0] * 3)
    with pytest.raises(ValueError, match=r"no example of class\(es\) \[3\]"):
        per_class_ap(np.zeros((4, 4)), labels, 4)
    assert spread([1.0, 3.0]) == {"mean": 2.0, "std": pytest.approx(np.sqrt(2))}


# The estimator.


def test_estimator_transfers_noisy_features_and_beats_chance():
    hr, lr, labels = _synthetic(lr_noise=1.0)
    test = np.arange(len(labels)) % 3 == 0
    model = LowResClassifier(["a", "b", "c", "d"], k=8, hidden_dim=64, training=SMALL, progress=False)
    model.fit(lr[~test], labels[~test], hr[~test])
    assert model.transform(lr[test]).shape == (test.sum(), 8)
    assert model.decision_function(lr[test]).shape == (test.sum(), 4)
    assert (model.predict(lr[test]) == labels[test]).mean() > 0.6  # chance is 0.25
    assert model.fit_summary_["pseudo_classes_used"] >= 2


def test_save_load_round_trip_gives_identical_predictions(fitted, renders):
    model, features, path = fitted
    assert path.with_suffix(".json").is_file()
    assert not list(path.parent.glob(".*tmp*")), "atomic writes leave no temporary file"
    loaded = load_classifier(path)
    np.testing.assert_array_equal(loaded.decision_function(features.lr_test), model.decision_function(features.lr_test))
    assert loaded.class_names == tuple(part_names()) and loaded.protocol == renders.protocol
    assert json.loads(path.with_suffix(".json").read_text())["k"] == 10


def test_bad_model_files_are_refused_by_name(fitted, tmp_path):
    _, _, path = fitted
    with pytest.raises(FileNotFoundError, match="missing.pt: no such file"):
        load_classifier(tmp_path / "missing.pt")
    lone = tmp_path / "lone.pt"
    shutil.copy(path, lone)
    with pytest.raises(ModelFileError, match="its sidecar lone.json is missing"):
        load_classifier(lone)
    lone.with_suffix(".json").write_text("{not json")
    with pytest.raises(ModelFileError, match="lone.pt: "):
        load_classifier(lone)
    with pytest.raises(RuntimeError, match="not fitted"):
        LowResClassifier(["a", "b"]).predict(np.zeros((1, 4)))


def test_fit_refuses_mismatched_features(fitted):
    model, features, _ = fitted
    with pytest.raises(ValueError, match="features of dimension 5; this classifier takes 10"):
        model.svm_.decision(np.zeros((1, 5)))
    with pytest.raises(ValueError, match="HR features of dimension 3 but LR of 1280"):
        LowResClassifier(["a", "b"]).fit(features.lr_train, np.zeros(len(features.lr_train)), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="LR features: holds NaN"):
        model.predict(np.full((1, 1280), np.nan))


# Renders and the classify path.


def test_renders_are_reproducible_and_cover_the_six_parts(renders):
    again = render_parts(12, seed=0, progress=False)
    assert again.class_names == tuple(part_names()) and again.images.shape == (72, 224, 224, 3)
    with PartRenderer() as renderer:
        fresh = renderer.render("bolt", np.random.default_rng([0, 1, 3]))
    np.testing.assert_array_equal(fresh, again.images[12 + 3])
    assert len(renders.train_labels) + len(renders.test_labels) == 72
    assert set(renders.test_labels.tolist()) == set(range(6))
    with pytest.raises(ValueError, match="2 or more parts"):
        render_parts(2, parts=("nut",))


def test_image_classifier_matches_the_estimator_on_backbone_features(fitted, renders, backbone):
    model, features, path = fitted
    classifier = ImageClassifier.load(path)
    scores = classifier.scores(renders.test_images[:4])
    np.testing.assert_allclose(scores, model.decision_function(features.lr_test[:4]), rtol=1e-4, atol=1e-4)
    assert classifier.last_timing.backbone_s > 0 and classifier.last_timing.head_s > 0


# The command line.


@pytest.mark.parametrize("verb", ["fit", "evaluate", "predict"])
def test_each_verb_has_help(verb):
    assert "usage: bin-perception lowres " + verb in _cli("lowres", verb, "--help").stdout


def test_bad_cli_input_gives_one_clear_line(tmp_path):
    result = _cli("lowres", "predict", "--model", tmp_path / "none.pt", tmp_path / "a.png", check=False)
    assert result.returncode == 2
    assert result.stderr.strip() == f"bin-perception lowres: error: low-resolution classifier {tmp_path / 'none.pt'}: no such file"
    result = _cli("lowres", "fit", "--data", "photos.txt", "--out", tmp_path / "m.pt", check=False)
    assert result.returncode == 2 and "data 'photos.txt': expected sim-parts or fashion-mnist" in result.stderr


@pytest.mark.slow
def test_fit_then_predict_on_the_command_line_agree_with_the_library(renders, tmp_path):
    from PIL import Image

    model = tmp_path / "cli_model.pt"
    out = _cli("lowres", "fit", "--per-part", 12, "--k", 10, "--hidden", 64, "--iterations", 20, "--out", model).stdout
    assert "fitted on 50 sim-parts images" in out and model.with_suffix(".json").is_file()
    image = tmp_path / "part.png"
    Image.fromarray(renders.test_images[0]).save(image)
    out = _cli("lowres", "predict", "--model", model, image, "--json", "--threads", 1).stdout
    result = json.loads(out.strip().splitlines()[-1])
    expected = ImageClassifier.load(model).scores(renders.test_images[:1])[0]
    assert result["label"] == part_names()[int(expected.argmax())]
    assert result["score"] == pytest.approx(float(expected.max()), abs=1e-3)


@pytest.mark.slow
def test_evaluate_quick_writes_metrics_report_and_tsne(tmp_path):
    out = tmp_path / "quick"
    # The quick protocol, smaller still: the full --quick runs in about a minute.
    stdout = _cli("lowres", "evaluate", "--quick", "--per-part", 20, "--iterations", 30, "--hidden", 256, "--out", out).stdout
    assert "transfer " in stdout and "mAP" in stdout
    metrics = json.loads((out / "metrics.json").read_text())
    for method in ("hr", "lr", "transfer", "transfer_bpgrad", "transfer_paired", "supervised_head", "distill"):
        assert set(metrics[method]["per_class_ap"]) == set(part_names())
        assert 0.0 <= metrics[method]["mAP"]["mean"] <= 100.0
    assert len(metrics["grid"]["mAP"]) == 2 and len(metrics["grid"]["mAP"][0]) == 2
    assert "Table 5.2" in (out / "report.md").read_text()
    for name in ("hr", "lr", "transfer"):
        assert (out / f"tsne_{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
