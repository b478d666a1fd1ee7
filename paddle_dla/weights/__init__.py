"""Weights: the registry of published files (sources, hashes, accuracy, preprocessing), the
cache, downloads that end and are verified, ``.pdparams`` I/O, and the converters between
PyTorch checkpoints and Paddle states (``weights.convert``).

The registry's names are importable from here (``from paddle_dla.weights import
get_weights``); they load no Paddle."""
from .registry import DEFAULT_TAG, WEIGHTS, Source, Weights, get_weights, list_weights

__all__ = ['DEFAULT_TAG', 'Source', 'WEIGHTS', 'Weights', 'get_weights', 'list_weights']
