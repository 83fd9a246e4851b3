"""What is run from a checkout and never installed: the solver benchmarks of Wu (2019, ch. 3), the experiment
drivers and the benchmark scripts. The library (``bin_perception``) never imports this package.

    python -m training.solver_bench run --suite NAME --out DIR     # BPGrad against torch.optim (ch. 3)
    python -m training.table --out runs/table                      # segments and poses, every part and N
    python -m training.ablations --out runs/ablations              # the thesis's switches, one at a time
    python -m training.bench.bench_train_step --bag BAG --instances N   # and the other bench_* scripts
"""
