"""The ``bin-perception`` command. Each verb is a thin call into the library."""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import re
import signal
import sys
import threading
from pathlib import Path

from .config import AUTO, REFINEMENTS, SENSORS, Config, ConfigError, TopicsConfig, load_config
from .extras import MissingExtraError, missing_extra
from .geometry import BIN_POSE_DOC, WORKSPACE_DOC, format_bin_pose, parse_bin_pose, parse_workspace
from .io.errors import BagError
from .lowres.cli import add_lowres_parser


def add_bag_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of every verb that reads a bag."""
    defaults = TopicsConfig()
    group = parser.add_argument_group("bag topics (defaults from --config, else the simulator's)")
    group.add_argument("--depth-topic", help=f"depth image topic [{defaults.depth}]")
    group.add_argument("--info-topic", help=f"CameraInfo topic [{defaults.camera_info}]")
    group.add_argument("--rgb-topic", help=f"colour image topic [{defaults.rgb}]")
    group.add_argument("--gt-labels-topic", help=f"ground-truth label image topic [{defaults.gt_labels}]")
    group.add_argument("--gt-poses-topic", help=f"ground-truth PoseArray topic [{defaults.gt_poses}]")
    group.add_argument("--workspace", type=parse_workspace, help=f"the parts' box: {WORKSPACE_DOC}")
    group.add_argument("--bin-pose", type=parse_bin_pose, help=f"with --workspace, the frame of its box: {BIN_POSE_DOC}")


def part_count(value: str) -> int | str:
    """An --instances value: a count of at least 1, or auto."""
    if value == AUTO:
        return value
    try:
        count = int(value)
    except ValueError:
        count = 0
    if count < 1:
        raise argparse.ArgumentTypeError(f"expected a count of at least 1 or {AUTO}, got {value!r}")
    return count


def topics_from_args(args: argparse.Namespace, config: Config) -> TopicsConfig:
    topics = config.topics
    return TopicsConfig(
        depth=args.depth_topic or topics.depth,
        camera_info=args.info_topic or topics.camera_info,
        rgb=args.rgb_topic or topics.rgb,
        gt_labels=args.gt_labels_topic or topics.gt_labels,
        gt_poses=args.gt_poses_topic or topics.gt_poses,
    )


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of `bin-perception train`."""
    parser.add_argument("--bag", action="append", required=True, help="a bag to train on (repeat for more)")
    parser.add_argument("--instances", type=int, required=True, help="parts per bin, N")
    parser.add_argument("--config", help="a YAML config, e.g. config/train_cpu.yaml")
    parser.add_argument("--out", required=True, help="the run directory")
    parser.add_argument("--optimizer", choices=("adam", "bpgrad", "sgd"), help="overrides train.optimizer")
    parser.add_argument("--max-minutes", type=float, help="stop (and checkpoint) after this long")
    parser.add_argument(
        "--resume", action="store_true", help="continue from OUT/checkpoint.pt (model, optimizer, step, data order), if it exists"
    )
    add_bag_arguments(parser)


def _cmd_parts(args: argparse.Namespace) -> int:
    from .sim.parts import load_part, part_names

    print(f"{'name':<10} {'symmetry':<9} {'extent (mm)':<20} description")
    for name in part_names():
        part = load_part(name)
        extent = " x ".join(f"{v * 1000:.1f}" for v in sorted(part.mesh.extents, reverse=True))
        print(f"{name:<10} {part.symmetry:<9} {extent:<20} {part.description}")
    print("Any OBJ, STL or PLY mesh path (in metres) is a part too.")
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from .sim.dataset import simulate_bag

    config = load_config(args.config)
    if args.sensor:
        config = dataclasses.replace(config, sensor=args.sensor)
    summary = simulate_bag(
        args.part,
        args.instances,
        args.scenes,
        args.seed,
        args.out,
        config,
        workers=args.workers,
        storage=args.storage,
        overwrite=args.overwrite,
    )
    print(
        f"wrote {summary.scenes} scenes to {summary.path} in {summary.seconds:.1f} s: "
        f"{summary.scenes_per_s:.1f} scenes/s with {args.workers} worker(s)"
    )
    return 0


def _cmd_inspect(args: argparse.Namespace) -> int:
    from .io.bag import BagReader, describe_topics, read_metadata
    from .viz import contact_sheet

    config = load_config(args.config)
    rows = describe_topics(args.bag)
    metadata = read_metadata(args.bag)
    custom = metadata.get("custom_data") or {}
    print(f"bag {args.bag} ({metadata.get('storage_identifier', '?')}), {sum(r[2] for r in rows)} messages")
    if "bin_perception.part" in custom:
        print(f"simulated part: {custom['bin_perception.part']}, instances: {custom.get('bin_perception.instances', '?')}")
    for topic, msgtype, count, detail in rows:
        print(f"  {topic:<32} {msgtype:<30} {count:>7} msgs  {detail}")
    try:
        reader = BagReader(args.bag, topics_from_args(args, config))
    except BagError as error:
        print(f"no contact sheet: {error}")
        return 0
    if args.workspace is not None:
        workspace, camera_from_bin = args.workspace, args.bin_pose
    else:
        workspace, camera_from_bin = reader.workspace(), reader.bin_pose()
    if workspace is not None:
        print("workspace (m): " + ",".join(f"{v:.4f}" for v in workspace.ravel()))
    if camera_from_bin is not None:
        print(f"bin pose: {format_bin_pose(camera_from_bin)}")
    frames = list(itertools.islice(reader, args.frames))
    if args.workspace_suggest:
        from .workspace import suggest_workspace

        if not frames:
            raise BagError(f"bag {reader.path}: no frame to suggest a workspace from")
        box, camera_from_bin = suggest_workspace(frames[0])
        print("suggested workspace (m), from the floor and walls of its first frame: " + ",".join(f"{v:.4f}" for v in box.ravel()))
        if camera_from_bin is not None:
            print(f"the camera looks at the bin at an angle; the box is in the bin's frame: --bin-pose {format_bin_pose(camera_from_bin)}")
    if frames:
        out = Path(args.out) if args.out else Path(f"{reader.path.name}_contact_sheet.png")
        contact_sheet(frames, out, title=str(reader.path))
        print(f"contact sheet of {len(frames)} frames: {out}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from .learning.distributed import init_from_env, shutdown
    from .learning.trainer import train

    config = load_config(args.config)
    config.topics = topics_from_args(args, config)
    if args.optimizer:
        config.train.optimizer = args.optimizer
    if args.instances < 1:
        raise ConfigError(f"--instances must be at least 1, got {args.instances}")
    cluster = init_from_env()
    try:
        result = train(args.bag, args.instances, config, args.out, args.workspace, args.max_minutes, args.resume, args.bin_pose)
    finally:
        shutdown(cluster)
    if cluster.is_main:
        print(
            f"trained {result.steps} steps ({result.epochs} epochs) in {result.seconds / 60:.1f} min, "
            f"final loss {result.final_loss:.4f}; wrote {result.run_dir / 'checkpoint.pt'}"
        )
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from .learning.evaluate import evaluate

    config = load_config(args.config) if args.config else None
    topics = topics_from_args(args, config or Config())
    baselines = tuple(b for b in args.baselines.split(",") if b)
    result = evaluate(
        args.bag, args.out, args.checkpoint, args.instances, baselines, config, topics, args.workspace, args.max_frames, args.tune_frames,
        camera_from_bin=args.bin_pose, refine=args.refine,
    )
    for method, m in result["methods"].items():
        print(f"{method:<9} P {m['precision']:.3f}  R {m['recall']:.3f}  F1 {m['f1']:.3f}  {m['ms_per_frame']:.1f} ms/frame")
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .learning.export import export

    result = export(args.checkpoint, args.out)
    print(f"object model: {result.model_ply}")
    if result.pose_network is None:
        print(f"pose network: not exported, it does not trace cleanly: {result.problem}")
    else:
        print(f"pose network (TorchScript): {result.pose_network}")
    print(f"inputs, units and normalisation: {result.manifest}")
    return 0


def _cmd_pick(args: argparse.Namespace) -> int:
    from .learning.pick_cell import run_cell
    from .model import load_checkpoint
    from .nodes.common import share_file

    config = load_config(args.cell or share_file("config", "real_pile.yaml"))
    if args.suction_radius_m is not None:
        config = config.with_suction_radius(args.suction_radius_m)
    perception = None
    if args.method == "model":
        if not args.checkpoint:
            raise ConfigError("pick --method model needs --checkpoint RUN/checkpoint.pt")
        perception, _, _ = load_checkpoint(args.checkpoint)
        perception.eval()
    report = run_cell(perception, args.part, args.instances, config, args.out, args.method, args.max_attempts, args.seed)
    s = report.summary()
    print(
        f"{s['method']}: picked {s['picked']} of {s['instances']} {s['part']}s with {s['cups_sent']} cups sent (shakes: {s['shakes']}) "
        f"(success rate {s['success_rate']:.3f}), {s['parts_left']} left; report: {Path(args.out) / 'report.md'}"
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .nodes.demo import run_demo, run_inloop_demo

    if args.inloop_minutes:
        summary = run_inloop_demo(Path(args.out), args.part, args.instances, args.inloop_minutes, args.rate_hz, args.cell)
        above = summary["first_minute_above_kmeans"]
        print("F1 above K-means " + (f"from minute {above:.1f}" if above is not None else "in no window"))
        print(f"curve: {Path(args.out) / 'inloop_f1.png'}")
        return 0

    summary = run_demo(
        Path(args.out), Path(args.checkpoint) if args.checkpoint else None, args.part, args.instances,
        args.frames, args.rate_hz, args.train_scenes, args.train_minutes, args.cell, args.pick_instances, args.pick_part,
        args.suction_radius_m,
    )
    print(
        f"{summary['frames']} frames at {summary['rate_hz']:.1f} Hz; latency p50 {summary['latency_p50_ms']:.1f} ms, "
        f"p95 {summary['latency_p95_ms']:.1f} ms; count exact in {summary['count_exact']:.0%} of frames; "
        f"pairwise F1 {summary['f1']:.3f} (K-means, told the count, {summary['f1_kmeans']:.3f})"
    )
    if "pick" in summary:
        p = summary["pick"]
        print(
            f"picking cell: {p['picked']} of {p['instances']} {p['part']}s picked with {p['cups_sent']} cups sent (shakes: {p['shakes']}) "
            f"(success rate {p['success_rate']:.3f})"
        )
    print(f"report: {Path(args.out) / 'report.md'}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bin-perception", description=__doc__)
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    parts = verbs.add_parser("parts", help="list the part library")
    parts.set_defaults(run=_cmd_parts)

    simulate = verbs.add_parser("simulate", help="simulate bins of a part into a rosbag2 bag")
    simulate.add_argument("--part", required=True, help="a library part (see `parts`) or a mesh path")
    simulate.add_argument("--instances", type=int, required=True, help="parts per bin, N")
    simulate.add_argument("--scenes", type=int, required=True, help="number of bins")
    simulate.add_argument("--seed", type=int, default=0, help="the same seed gives the same bag")
    simulate.add_argument("--out", required=True, help="the bag directory to write")
    simulate.add_argument("--workers", type=int, default=1, help="parallel simulator processes")
    simulate.add_argument("--storage", choices=("mcap", "sqlite3"), default="mcap")
    simulate.add_argument("--overwrite", action="store_true", help="replace an existing bag at --out")
    simulate.add_argument("--config", help="a YAML config (see config/sim.yaml)")
    simulate.add_argument("--sensor", choices=SENSORS, help="the depth camera imitated; overrides the config's sensor [clean]")
    simulate.set_defaults(run=_cmd_simulate)

    inspect = verbs.add_parser("inspect", help="summarise a bag and draw a contact sheet")
    inspect.add_argument("bag", help="a rosbag2 bag directory (MCAP or sqlite3)")
    inspect.add_argument("--frames", type=int, default=4, help="frames on the contact sheet")
    inspect.add_argument("--out", help="contact sheet PNG [BAG_contact_sheet.png]")
    inspect.add_argument("--config", help="a YAML config")
    inspect.add_argument(
        "--workspace-suggest", action="store_true", help="fit the bin's floor and walls in the first frame and print the box they hold"
    )
    add_bag_arguments(inspect)
    inspect.set_defaults(run=_cmd_inspect)

    train = verbs.add_parser("train", help="train the perception model on bags")
    add_train_arguments(train)
    train.set_defaults(run=_cmd_train)

    evaluate = verbs.add_parser("evaluate", help="evaluate a model and the clustering baselines on a bag")
    evaluate.add_argument("--bag", required=True, help="a bag with ground truth")
    evaluate.add_argument("--checkpoint", help="RUN_DIR/checkpoint.pt; without it, the baselines alone")
    evaluate.add_argument(
        "--instances", type=part_count,
        help=f"N, or {AUTO}: the model counts the parts in each frame [the bag's N]; N is required without --checkpoint",
    )
    evaluate.add_argument("--baselines", default="kmeans,spectral,dbscan", help="comma-separated, or empty")
    evaluate.add_argument("--max-frames", type=int, help="evaluate at most this many frames")
    evaluate.add_argument(
        "--tune-frames", type=int, default=10, help="the first frames, held out to choose DBSCAN's radius and scored by no method [10]"
    )
    evaluate.add_argument("--config", help="a YAML config")
    evaluate.add_argument("--refine", choices=REFINEMENTS, help="refine the poses against the learned model (icp) or not [the checkpoint's]")
    evaluate.add_argument("--out", required=True, help="the report directory")
    add_bag_arguments(evaluate)
    evaluate.set_defaults(run=_cmd_evaluate)

    export = verbs.add_parser("export", help="write a checkpoint's object model (PLY) and pose network (TorchScript)")
    export.add_argument("--checkpoint", required=True, help="RUN_DIR/checkpoint.pt")
    export.add_argument("--out", required=True, help="the directory for model.ply, pose_network.pt and export.json")
    export.set_defaults(run=_cmd_export)

    pick = verbs.add_parser("pick", help="the simulated picking cell: pour a bin, then pick with a suction cup until it is empty")
    pick.add_argument("--checkpoint", help="RUN_DIR/checkpoint.pt (method model)")
    pick.add_argument("--part", required=True, help="a library part (see `parts`) or a mesh path")
    pick.add_argument("--instances", type=int, default=20, help="parts poured into the bin [20]")
    pick.add_argument("--method", choices=("model", "kmeans"), default="model", help="the checkpoint's grasps, or K-means told the count")
    pick.add_argument("--max-attempts", type=int, default=40, help="picks tried at most [40]")
    pick.add_argument(
        "--suction-radius-m", type=float,
        help="the cup's lip radius, over the cell's gripper; under half the narrowest face it seals on (a bolt 0.002, a nut 0.0025)",
    )
    pick.add_argument("--seed", type=int, default=0, help="the same seed pours the same bin")
    pick.add_argument("--cell", type=Path, help="the cell's YAML and its gripper [config/real_pile.yaml]")
    pick.add_argument("--out", default="pick_report", help="the report directory [pick_report]")
    pick.set_defaults(run=_cmd_pick)

    demo = verbs.add_parser("demo", help="the main job: sim camera -> perception_node -> a client, over ROS 2")
    demo.add_argument("--checkpoint", help="your model; without it, the demo's own (trained once, then cached)")
    demo.add_argument("--part", default="nut", help="the simulated part [nut]")
    demo.add_argument("--instances", type=int, default=3, help="parts per bin [3]")
    demo.add_argument("--frames", type=int, default=150, help="frames to collect [150]")
    demo.add_argument("--rate-hz", type=float, default=10.0, help="the simulated camera's frame rate [10]")
    demo.add_argument("--train-scenes", type=int, default=300, help="bins simulated to train the demo's model [300]")
    demo.add_argument("--train-minutes", type=float, default=3.0, help="training time of the demo's model [3]")
    demo.add_argument("--pick-instances", type=int, default=20, help="then empty a poured bin of this many with the picking cell; 0 skips it [20]")
    demo.add_argument("--pick-part", default="housing", help="the part of the bin it empties [housing]")
    demo.add_argument("--suction-radius-m", type=float, default=0.008, help="the picking cell's cup, sized to that part [0.008, a housing's]")
    demo.add_argument("--inloop-minutes", type=float, help="instead: train in the loop from nothing for this long, F1 against K-means")
    demo.add_argument(
        "--cell", type=Path, help="the simulated cell's YAML [config/real_cell.yaml]; config/sim.yaml: the thesis's close 224 px view"
    )
    demo.add_argument("--out", default="demo_out", help="the report directory [demo_out]")
    demo.set_defaults(run=_cmd_demo)

    add_lowres_parser(verbs)
    return parser


def _exit_on_sigterm(signum: int, _frame) -> None:
    # An exception, unlike the default action, unwinds the writers: a staged bag or checkpoint is removed.
    raise SystemExit(128 + signum)


# A box in the camera frame nearly always starts with a minus, which argparse would take for an option.
_NEGATIVE_VALUE = re.compile(r"-\.?\d")


def attach_negative_values(argv: list[str], flags: tuple[str, ...] = ("--workspace", "--bin-pose")) -> list[str]:
    """``argv`` with ``FLAG -0.15,...`` written ``FLAG=-0.15,...``, so that a value starting with a minus reaches ``FLAG``."""
    joined: list[str] = []
    tokens = iter(argv)
    for token in tokens:
        if token in flags:
            value = next(tokens, None)
            if value is not None and _NEGATIVE_VALUE.match(value):
                joined.append(f"{token}={value}")
                continue
            joined.extend([token] if value is None else [token, value])
        else:
            joined.append(token)
    return joined


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(attach_negative_values(sys.argv[1:] if argv is None else list(argv)))
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if getattr(args, "bin_pose", None) is not None and args.workspace is None:
        parser.error("--bin-pose is the frame of a --workspace box; give the box too")
    try:
        return args.run(args)
    except (BagError, ConfigError, FileNotFoundError, FileExistsError, ValueError, MissingExtraError) as error:
        print(f"bin-perception {args.verb}: error: {error}", file=sys.stderr)
        return 2
    except ModuleNotFoundError as error:
        missing = missing_extra(error, "this command")
        if missing is None:
            raise
        print(f"bin-perception {args.verb}: error: {missing}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
