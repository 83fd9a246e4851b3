"""``python -m training.solver_bench``: run a solver benchmark of Wu (2019, ch. 3), or estimate BPGrad's L for one.

Run from a checkout (``training/`` is not installed):

    python -m training.solver_bench run --suite NAME [--quick] [--workers N] --out DIR
    python -m training.solver_bench lipschitz --suite NAME [--copies 600] [--percentile 90] --out FIG.png
"""

from __future__ import annotations

import argparse
import sys

from .registry import SUITES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training.solver_bench", description=__doc__.splitlines()[0])
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    suites = sorted(SUITES)

    run = verbs.add_parser("run", help="run a benchmark: BPGrad against torch.optim")
    run.add_argument("--suite", required=True, choices=suites, help="the benchmark")
    run.add_argument("--out", required=True, help="the directory for results.json, results.md and the PNGs")
    run.add_argument("--quick", action="store_true", help="a short run of the same protocol (for tests)")
    run.add_argument("--workers", type=int, default=1, help="single-threaded processes to run trials in")

    lipschitz = verbs.add_parser("lipschitz", help="estimate BPGrad's Lipschitz constant L for a benchmark's network")
    lipschitz.add_argument("--suite", required=True, choices=suites, help="whose network and data")
    lipschitz.add_argument("--out", required=True, help="the figure (PNG), as the thesis's Fig. 3.15")
    lipschitz.add_argument("--copies", type=int, default=600, help="random initial parameter copies")
    lipschitz.add_argument("--percentile", type=float, default=90.0, help="where in the distribution the suggested L sits")
    lipschitz.add_argument("--seed", type=int, default=0, help="the copies and the batches")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if args.verb == "run":
            from .runner import run_suite

            report, json_path, markdown_path = run_suite(args.suite, args.out, quick=args.quick, workers=args.workers)
            print(f"{report.title}: {report.data['wall_seconds']:.0f} s")
            print(f"results: {json_path}, {markdown_path} and {len(report.figures)} PNGs")
        else:
            from .lipschitz_report import lipschitz_report

            lipschitz_report(args.suite, args.out, copies=args.copies, percentile=args.percentile, seed=args.seed)
    except (FileNotFoundError, ValueError) as error:
        print(f"solver_bench {args.verb}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
