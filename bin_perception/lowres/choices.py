"""The names the command line offers, importable without torch or scikit-learn."""

BACKBONES = ("efficientnet-lite0", "resnet50", "resnet101")
DEFAULT_BACKBONE = "efficientnet-lite0"
DATASETS = ("sim-parts", "fashion-mnist")
ASSIGNMENTS = ("nearest", "paired")
OPTIMIZERS = ("sgd", "bpgrad")
