"""Learning the part and its poses from depth alone: the offline trainer, the in-loop trainer and their parts.

- ``trainer``: ``train()``, offline on bags (``bin-perception train``), one process or many under torchrun.
- ``inloop``: the trainer process that ``perception_node`` runs in ``mode: train_inloop``.
- ``frame_cache``: the bags' frames decoded once, read back by index.
- ``data``: frames from bags, and the workspace they are seen in.
- ``distributed``: data-parallel training across processes.
- ``self_training``: the seeds' views registered without the network, and the network taught their poses.
- ``evaluate``: a model and the clustering baselines scored on a bag with ground truth.
- ``export``: a checkpoint's model as PLY and its pose network as TorchScript.
"""
