"""Strict loading and atomic saving of Paddle state dicts.

Paddle's ``Layer.set_state_dict`` only warns about missing or mis-shaped keys;
here every mismatch is an error that names the keys.
"""
import os

import numpy as np
import paddle

from .atomic import atomic_output

_MAX_LISTED = 12


class StateDictMismatch(ValueError):
    """A state dict does not fit a model: lists missing, unexpected and mis-shaped keys."""

    def __init__(self, missing=(), unexpected=(), mismatched=(), context=''):
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)  # (key, expected shape, found shape)
        parts = []
        if self.missing:
            parts.append(f'missing keys {_listing(self.missing)}')
        if self.unexpected:
            parts.append(f'unexpected keys {_listing(self.unexpected)}')
        if self.mismatched:
            shapes = [f'{k} (expected {list(e)}, found {list(f)})' for k, e, f in self.mismatched]
            parts.append(f'mis-shaped keys {_listing(shapes)}')
        prefix = f'{context}: ' if context else ''
        super().__init__(prefix + '; '.join(parts))


def _listing(items):
    shown = ', '.join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return f'[{shown}' + (f', ... and {more} more]' if more > 0 else ']')


def check_state_dict(expected_shapes, state, context=''):
    """Raise :class:`StateDictMismatch` unless ``state`` has exactly the expected keys and shapes."""
    missing = [k for k in expected_shapes if k not in state]
    unexpected = [k for k in state if k not in expected_shapes]
    mismatched = [(k, expected_shapes[k], tuple(np.shape(state[k])))
                  for k in expected_shapes if k in state
                  and tuple(np.shape(state[k])) != tuple(expected_shapes[k])]
    if missing or unexpected or mismatched:
        raise StateDictMismatch(missing, unexpected, mismatched, context)


def _as_numpy(value):
    return value.numpy() if isinstance(value, paddle.Tensor) else np.asarray(value)


def load_state_dict_strict(model, state, context=''):
    """Copy ``state`` into ``model``, refusing any missing, unexpected or mis-shaped key.

    Values are cast to the dtype of the model's own tensors, so a float32 file
    loads into a float64 model and vice versa.
    """
    own = model.state_dict()
    check_state_dict({k: tuple(v.shape) for k, v in own.items()}, state, context)
    cast = {k: paddle.to_tensor(_as_numpy(state[k]).astype(_numpy_dtype(own[k])))
            for k in own}
    result = model.set_state_dict(cast)
    if result is not None:  # (missing, unexpected) on Paddle >= 2.x
        missing, unexpected = result
        if missing or unexpected:
            raise StateDictMismatch(missing, unexpected, context=context)
    return model


def _numpy_dtype(tensor):
    return np.dtype(str(tensor.dtype).replace('paddle.', ''))


def load_pdparams(path):
    """Read a ``.pdparams`` file as ``{key: numpy array}``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'no such weights file: {path}')
    try:
        state = paddle.load(path, return_numpy=True)
    except Exception as exc:  # paddle raises assorted types for corrupt files
        raise ValueError(f'{path} is not a readable .pdparams file ({type(exc).__name__}: '
                         f'{exc})') from exc
    if not isinstance(state, dict):
        raise ValueError(f'{path} does not hold a state dict (found {type(state).__name__})')
    return state


def save_pdparams(state, path):
    """Write ``{key: array}`` to ``path`` atomically: a temp file in the same folder, then rename."""
    path = os.fspath(path)
    arrays = {k: np.ascontiguousarray(_as_numpy(v)) for k, v in state.items()}
    odd = [k for k, v in arrays.items() if v.dtype.kind not in 'fiub']
    if odd:
        raise TypeError(f'not numeric tensors: {", ".join(odd[:5])}')
    with atomic_output(path) as tmp:
        # Plain arrays (not Tensors, which carry process-dependent names): the same
        # weights always give the same bytes.
        paddle.save(arrays, tmp)
    return path
