"""Weights: the registry of published files (sources, hashes, accuracy, preprocessing), the
cache, downloads that end and are verified, ``.pdparams`` I/O, and the converters between
PyTorch checkpoints and Paddle states (``weights.convert``)."""
