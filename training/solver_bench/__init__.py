"""The solver benchmarks of Wu (2019, ch. 3): BPGrad against torch.optim's solvers, suite by suite.

    python -m training.solver_bench run --suite NAME [--quick] [--workers N] --out DIR
    python -m training.solver_bench lipschitz --suite NAME [--copies 600] [--percentile 90] --out FIG.png

Run from a checkout: ``training/`` is not installed.

The suites are in registry.py; runner.run_suite runs one.
"""
