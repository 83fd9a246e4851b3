"""bin_perception: unsupervised 3D part models, 6D poses and instance segments for bin picking."""

__version__ = "0.1.0"
