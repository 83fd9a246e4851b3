"""The perception model of the thesis (ch. 4): a pose network and a learned point-cloud model of the part."""

from .perception import BinPerception, CheckpointError, Prediction, load_checkpoint, save_checkpoint

__all__ = ["BinPerception", "CheckpointError", "Prediction", "load_checkpoint", "save_checkpoint"]
