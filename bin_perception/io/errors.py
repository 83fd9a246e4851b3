"""Errors of the data layer; each message names the file, the topic and the problem."""


class BagError(ValueError):
    """A bag that cannot be read as asked: missing, without a topic, or holding bad data."""


class FrameError(BagError):
    """One message that cannot be decoded into a frame (an encoding, a size, a calibration).

    ``reason`` is a short key for the kind of fault, under which a node counts the frames it drops:
    ``encoding``, ``malformed``, ``size_mismatch``, ``no_depth`` or ``camera_info``.
    """

    def __init__(self, message: str, reason: str = "malformed") -> None:
        super().__init__(message)
        self.reason = reason
