"""The cost of a BPGrad step against torch.optim.SGD(momentum=0.9, foreach=True), on ResNet-18's parameters.

    python -m training.bench.bench_bpgrad_step [--rounds 100] [--steps 2] [--threads N] [--json out.json]

Each optimizer owns a copy of torchvision's ResNet-18 parameters (11.7 M, on the CPU) with the same fixed
random gradients; only ``step()`` is timed. In each round every optimizer takes ``--steps`` steps, in an
order that reverses every round, so that a noisy neighbour on a shared machine slows them alike. The
figure is the median over rounds of the ratio of each optimizer's time to SGD's in the same round, in
wall-clock time and in process CPU time (the latter blind to time spent descheduled). Target: 1.15.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torchvision
from tqdm import tqdm

from bin_perception.optim import BPGrad

TARGET_RATIO = 1.15
BASELINE = "SGD foreach"
OFFICIAL = {"eta_outside_momentum": True, "epoch_mean_loss": True, "norm_before_decay": True}


def _parameters_with_gradients() -> list[torch.nn.Parameter]:
    torch.manual_seed(0)
    params = list(torchvision.models.resnet18(weights=None).parameters())
    generator = torch.Generator().manual_seed(0)
    for p in params:
        p.grad = torch.randn(p.shape, generator=generator)
    return params


def _steps() -> dict[str, Callable[[], object]]:
    """Name -> a zero-argument step of an optimizer on its own parameters."""
    loss = torch.tensor(2.3)
    sgd = torch.optim.SGD(_parameters_with_gradients(), lr=0.01, momentum=0.9, foreach=True)

    def bpgrad(foreach: bool, **options) -> Callable[[], object]:
        optimizer = BPGrad(_parameters_with_gradients(), lipschitz=50.0, momentum=0.9, foreach=foreach, **options)
        return lambda: optimizer.step(loss=loss)

    return {
        BASELINE: sgd.step,
        "BPGrad foreach": bpgrad(True),
        "BPGrad per-tensor": bpgrad(False),
        "BPGrad foreach, official options": bpgrad(True, **OFFICIAL),
    }


def _time(step: Callable[[], object], steps: int) -> tuple[float, float]:
    """Seconds per step: wall clock, and this process's CPU time over all its threads."""
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=100, help="interleaved rounds of every optimizer")
    parser.add_argument("--steps", type=int, default=2, help="steps timed together in a round")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps first (buffers, caches)")
    parser.add_argument("--threads", type=int, help="torch's intra-op threads [torch's default]")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    steps = _steps()
    for step in steps.values():
        _time(step, args.warmup)
    names = list(steps)
    timings: dict[str, list[tuple[float, float]]] = {name: [] for name in names}
    for round_ in tqdm(range(args.rounds), desc="rounds"):
        for name in names if round_ % 2 == 0 else reversed(names):
            timings[name].append(_time(steps[name], args.steps))

    results = {
        "parameters": sum(p.numel() for p in _parameters_with_gradients()),
        "rounds": args.rounds,
        "steps_per_round": args.steps,
        "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "target_ratio": TARGET_RATIO,
        "optimizers": {},
    }
    print(f"ResNet-18 ({results['parameters'] / 1e6:.1f} M parameters), CPU, {results['threads']} threads, "
          f"{results['cpu_count']} cores, torch {torch.__version__}; {args.rounds} rounds x {args.steps} steps")
    print(f"{'optimizer':<34} {'wall ms':>8} {'ratio':>6} {'IQR':>12} {'CPU ms':>8} {'ratio':>6} {'IQR':>12}")
    for name in names:
        row = {}
        for clock, index in (("wall", 0), ("cpu", 1)):
            ratios = [t[index] / b[index] for t, b in zip(timings[name], timings[BASELINE], strict=True)]
            q1, median, q3 = statistics.quantiles(ratios, n=4)
            row[clock] = {
                "ms_per_step": 1e3 * statistics.median(t[index] for t in timings[name]),
                "median_ratio": median,
                "ratio_iqr": [q1, q3],
            }
        results["optimizers"][name] = row
        cells = [f"{row[c]['ms_per_step']:>8.2f} {row[c]['median_ratio']:>6.3f} "
                 f"{row[c]['ratio_iqr'][0]:>5.3f}-{row[c]['ratio_iqr'][1]:<6.3f}" for c in ("wall", "cpu")]
        print(f"{name:<34} {cells[0]} {cells[1]}")
    ratio = results["optimizers"]["BPGrad foreach"]["wall"]["median_ratio"]
    print(f"BPGrad foreach / SGD foreach, wall clock: {ratio:.3f}, {'within' if ratio <= TARGET_RATIO else 'OVER'} "
          f"the {TARGET_RATIO}x target")
    if args.json:
        path = Path(args.json)
        with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
            json.dump(results, tmp, indent=2)
        os.replace(tmp.name, path)
    return results


if __name__ == "__main__":
    main()
