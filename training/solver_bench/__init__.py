"""The solver benchmarks of Wu (2019, ch. 3): BPGrad against torch.optim's solvers, suite by suite.

    bin-perception bench-solvers --suite NAME [--quick] [--workers N] --out DIR
    bin-perception lipschitz --suite NAME [--copies 600] [--percentile 90] --out FIG.png

The suites are in registry.py; runner.run_suite runs one.
"""
