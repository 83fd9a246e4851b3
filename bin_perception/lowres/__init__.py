"""The low-resolution camera classifier: unsupervised deep feature transfer (Wu 2019, ch. 5).

One module, one job:

- ``images``: the HR and LR views of an image (the resolution protocol).
- ``backbone``: frozen ImageNet convnets (EfficientNet-Lite0 by default, torchvision ResNets from local weights).
- ``features``: batched feature extraction with an on-disk cache keyed by image hash.
- ``pseudo_labels``: k-means on HR features, nearest-centroid labels.
- ``transfer_net``: the two-layer transfer network and its training (SGD or BPGrad).
- ``linear``: one-vs-rest linear SVMs and a softmax head, as plain arrays.
- ``estimator``: ``LowResClassifier`` (fit / transform / predict / decision_function), saved weights-only.
- ``serving``: images to class scores, the path the node and the CLI share.
- ``datasets``, ``evaluation``, ``experiment``, ``report``, ``cli``: the experiment of Tables 5.1, 5.2 and Fig. 5.3.

This package imports nothing heavy, so that the command line starts fast; import from the modules.
"""
