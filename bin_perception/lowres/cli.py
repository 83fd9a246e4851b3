"""``bin-perception lowres {fit,evaluate,predict}``: thin calls into the low-resolution classifier."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from .choices import ASSIGNMENTS, BACKBONES, DATASETS, DEFAULT_BACKBONE, OPTIMIZERS

# A few hundred renders, one seed, small nets: the whole protocol in about a minute on 2 cores.
QUICK = {"per_part": 50, "seeds": (0,), "k": 20, "hidden_dim": 1024, "iterations": 100, "lr_step": 50,
         "grid_n1": (256, 1024), "grid_n2": (10, 20), "tsne_points": 300}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of integers") from None
    if not values:
        raise argparse.ArgumentTypeError("the list is empty")
    return values


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("data")
    group.add_argument("--per-part", type=int, help="sim-parts: renders per part [200; --quick: 50]")
    group.add_argument("--fmnist-train", type=int, default=3000, help="fashion-mnist: training images used [3000]")
    group.add_argument("--fmnist-test", type=int, default=1000, help="fashion-mnist: test images used [1000]")
    group.add_argument("--low-px", type=int, help="the LR size [32 for sim-parts and .npz, 8 for fashion-mnist]")


def _add_model_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model (defaults: the thesis's, with a CPU-sized schedule)")
    group.add_argument("--k", type=int, help="k-means clusters = N2 [100; --quick: 20]")
    group.add_argument("--hidden", type=int, help="N1, the transfer net's first layer [4096; --quick: 1024]")
    group.add_argument("--iterations", type=int, help="transfer net iterations [200; --quick: 100]")
    group.add_argument("--lr-step", type=int, help="divide the learning rate by 10 every this many iterations [iterations / 2]")
    group.add_argument("--batch-size", type=int, default=1000, help="transfer net batch [1000]")
    group.add_argument("--lipschitz", type=float, default=100.0, help="BPGrad's L [100]")
    group.add_argument("--svm-c", type=float, default=1.0, help="the SVMs' C [1]")
    group.add_argument("--backbone", choices=BACKBONES, default=DEFAULT_BACKBONE, help=f"[{DEFAULT_BACKBONE}]")
    group.add_argument("--backbone-weights", help="a local torchvision state dict, for the ResNets")
    group.add_argument("--threads", type=int, help="torch threads [torch's default: all cores]")


def _training(args: argparse.Namespace, quick: bool):
    from .transfer_net import TransferTraining

    iterations = args.iterations or (QUICK["iterations"] if quick else TransferTraining.iterations)
    return TransferTraining(
        iterations=iterations,
        lr_step_iterations=args.lr_step or max(iterations // 2, 1),
        batch_size=args.batch_size,
        optimizer=getattr(args, "optimizer", "sgd"),
        lipschitz=args.lipschitz,
    )


def _set_threads(args: argparse.Namespace) -> None:
    import torch

    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be 1 or more, got {args.threads}")
        torch.set_num_threads(args.threads)


def _data_loader(args: argparse.Namespace, source: str, quick: bool):
    """A function of the seed that gives the labelled set ``source`` names."""
    from . import datasets

    if source == "sim-parts":
        per_part = args.per_part or (QUICK["per_part"] if quick else 200)
        return lambda seed: datasets.sim_parts(per_part, seed, low_px=args.low_px or 32)
    if source == "fashion-mnist":
        data = datasets.fashion_mnist(args.fmnist_train, args.fmnist_test, low_px=args.low_px or 8)
        return lambda seed: data
    if not source.endswith(".npz"):
        raise ValueError(f"data {source!r}: expected {' or '.join(DATASETS)}, or an .npz of images, labels and class_names")
    return lambda seed: datasets.npz_images(source, seed, low_px=args.low_px or 32)


def _cmd_fit(args: argparse.Namespace) -> int:
    from .backbone import load_backbone
    from .estimator import LowResClassifier, save_classifier
    from .evaluation import per_class_ap
    from .experiment import dataset_features

    _set_threads(args)
    data = _data_loader(args, args.data, quick=False)(args.seed)
    backbone = load_backbone(args.backbone, args.backbone_weights)
    features = dataset_features(backbone, data, progress=True)
    model = LowResClassifier(
        data.class_names, k=args.k or 100, hidden_dim=args.hidden or 4096, training=_training(args, quick=False),
        svm_c=args.svm_c, assignment=args.assignment, seed=args.seed, backbone_key=backbone.key, protocol=data.protocol,
    ).fit(features.lr_train, data.train_labels, features.hr_train)
    save_classifier(args.out, model)
    test_map = per_class_ap(model.decision_function(features.lr_test), data.test_labels, len(data.class_names)).mean()
    print(f"fitted on {len(data.train_labels)} {data.name} images ({model.fit_summary_['pseudo_classes_used']} of "
          f"{model.k} pseudo-classes used); held-out LR mAP {test_map:.1f}% on {len(data.test_labels)} images")
    print(f"model: {args.out} and {Path(args.out).with_suffix('.json')}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .backbone import load_backbone
    from .experiment import ExperimentPlan, run_experiment
    from .report import write_report

    _set_threads(args)
    quick = args.quick
    plan = ExperimentPlan(
        seeds=args.seeds or (QUICK["seeds"] if quick else (0, 1, 2)),
        k=args.k or (QUICK["k"] if quick else 100),
        hidden_dim=args.hidden or (QUICK["hidden_dim"] if quick else 4096),
        training=_training(args, quick),
        svm_c=args.svm_c,
        grid_hidden_dims=args.grid_n1 or (QUICK["grid_n1"] if quick else (256, 1024, 4096)),
        grid_ks=args.grid_n2 or (QUICK["grid_n2"] if quick else (20, 100, 200)),
        tsne_points=args.tsne_points or (QUICK["tsne_points"] if quick else 600),
    )
    load_data = _data_loader(args, args.dataset, quick)
    backbone = load_backbone(args.backbone, args.backbone_weights)
    metrics, embeddings, tsne_labels = run_experiment(load_data, backbone, plan)
    report = write_report(metrics, embeddings, tsne_labels, args.out)
    for name in ("hr", "lr", "transfer", "transfer_bpgrad", "transfer_paired", "supervised_head", "distill"):
        m = metrics[name]["mAP"]
        print(f"{name:<16} mAP {m['mean']:5.1f} ± {m['std']:.1f} %")
    print(f"report: {report}, metrics: {Path(args.out) / 'metrics.json'}")
    return 0


def _read_images(paths: list[str]) -> tuple[list[str], list[np.ndarray]]:
    """Names and uint8 images (each of its own size) from image files and .npz files."""
    from PIL import Image

    names, images = [], []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"image {path}: no such file")
        if path.suffix.lower() == ".npz":
            with np.load(path, allow_pickle=False) as stored:
                if "images" not in stored.files:
                    raise ValueError(f"image set {path}: lacks the array 'images'")
                batch = stored["images"]
            names += [f"{path}[{i}]" for i in range(len(batch))]
            images += list(batch)
        elif path.suffix.lower() in IMAGE_SUFFIXES:
            try:
                images.append(np.asarray(Image.open(path).convert("RGB")))
            except OSError as error:
                raise ValueError(f"image {path}: cannot be read ({error})") from None
            names.append(str(path))
        else:
            raise ValueError(f"image {path}: expected {', '.join(IMAGE_SUFFIXES)} or .npz")
    return names, images


def _cmd_predict(args: argparse.Namespace) -> int:
    from .serving import ImageClassifier

    _set_threads(args)
    classifier = ImageClassifier.load(args.model, args.backbone_weights)
    names, images = _read_images(args.images)
    for name, image in zip(names, images):
        scores = classifier.scores(np.asarray(image)[None])[0]
        best = int(scores.argmax())
        if args.json:
            print(json.dumps({"image": name, "label": classifier.class_names[best], "score": float(scores[best]),
                              "scores": dict(zip(classifier.class_names, scores.round(4).tolist()))}))
        else:
            print(f"{name}: {classifier.class_names[best]} (SVM margin {scores[best]:+.3f})")
    return 0


def add_lowres_parser(verbs: argparse._SubParsersAction) -> None:
    """The ``lowres`` verb and its three sub-verbs, on the ``bin-perception`` parser's subparsers."""
    lowres = verbs.add_parser("lowres", help="the low-resolution camera classifier (thesis ch. 5)")
    sub = lowres.add_subparsers(dest="lowres_verb", required=True, metavar="{fit,evaluate,predict}")

    fit = sub.add_parser("fit", help="fit a classifier on a labelled image set and save it")
    fit.add_argument("--data", default="sim-parts", help=f"{' or '.join(DATASETS)}, or an .npz of images, labels and class_names [sim-parts]")
    fit.add_argument("--out", required=True, help="the model file (MODEL.pt, with MODEL.json beside it)")
    fit.add_argument("--seed", type=int, default=0, help="the split, k-means, the net's initialisation [0]")
    fit.add_argument("--optimizer", choices=OPTIMIZERS, default="sgd", help="the transfer net's solver [sgd]")
    fit.add_argument("--assignment", choices=ASSIGNMENTS, default="nearest",
                     help="pseudo-label of an LR image: its nearest HR centroid (the thesis) or its HR view's cluster [nearest]")
    _add_data_arguments(fit)
    _add_model_arguments(fit)
    fit.set_defaults(run=_cmd_fit)

    evaluate = sub.add_parser("evaluate", help="HR / LR / transfer AP per class, the N1 x N2 grid, t-SNE, references")
    evaluate.add_argument("--dataset", default="sim-parts", help=f"{' or '.join(DATASETS)}, or an .npz [sim-parts]")
    evaluate.add_argument("--out", required=True, help="the directory for metrics.json, report.md and the PNGs")
    evaluate.add_argument("--quick", action="store_true", help="a small version: 50 renders per part, one seed, small nets")
    evaluate.add_argument("--seeds", type=_int_list, help="comma-separated [0,1,2; --quick: 0]")
    evaluate.add_argument("--grid-n1", type=_int_list, help="N1 values of the grid [256,1024,4096]")
    evaluate.add_argument("--grid-n2", type=_int_list, help="N2 = k values of the grid [20,100,200]")
    evaluate.add_argument("--tsne-points", type=int, help="test points in each t-SNE plot [600]")
    _add_data_arguments(evaluate)
    _add_model_arguments(evaluate)
    evaluate.set_defaults(run=_cmd_evaluate)

    predict = sub.add_parser("predict", help="classify image files (PNG, JPEG) or an .npz of images with a saved model")
    predict.add_argument("--model", required=True, help="MODEL.pt written by `lowres fit`")
    predict.add_argument("images", nargs="+", help="image files, or .npz files holding an 'images' array")
    predict.add_argument("--backbone-weights", help="the ResNet weights the model was fitted with, if it was")
    predict.add_argument("--threads", type=int, help="torch threads")
    predict.add_argument("--json", action="store_true", help="one JSON object a line, with every class's score")
    predict.set_defaults(run=_cmd_predict)
