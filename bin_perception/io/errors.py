"""Errors of the data layer; each message names the file, the topic and the problem."""


class BagError(ValueError):
    """A bag that cannot be read as asked: missing, without a topic, or holding bad data."""


class FrameError(BagError):
    """One message that cannot be decoded into a frame (an encoding, a size, a calibration)."""
