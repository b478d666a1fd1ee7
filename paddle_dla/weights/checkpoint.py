"""Strict loading and atomic saving of Paddle state dicts.

Paddle's ``Layer.set_state_dict`` only warns about missing or mis-shaped keys;
here every mismatch is an error that names the keys.
"""
import os

import numpy as np
import paddle

from ..core import safe_pickle
from ..core.atomic import atomic_output
from ..core.errors import CheckpointReadError, PaddleDLAError, WeightsNotFound, printable

_MAX_LISTED = 12


class StateDictMismatch(PaddleDLAError, ValueError):
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
        prefix = f'{context}: ' if context and parts else context
        super().__init__(prefix + '; '.join(parts))


def _listing(items):
    shown = ', '.join(printable(item) for item in items[:_MAX_LISTED])
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


def to_numpy(value):
    """A torch tensor, Paddle tensor or array as a numpy array (half types widened to float32)."""
    if hasattr(value, 'detach'):  # torch.Tensor, without importing torch
        value = value.detach().cpu()
        if value.is_floating_point() and value.element_size() < 4:
            value = value.float()
        return value.numpy()
    if isinstance(value, paddle.Tensor):
        return value.numpy()
    return np.asarray(value)


def load_state_dict_strict(model, state, context='', keep_own=()):
    """Copy ``state`` into ``model``, refusing any missing, unexpected or mis-shaped key.

    Keys under the prefixes ``keep_own`` must be absent from ``state`` and keep the model's
    own values (a fresh classifier for fine-tuning). Values are cast to the dtype of the
    model's own tensors, so a float32 file loads into a float64 model and vice versa.
    """
    everything = model.state_dict()
    own = {k: v for k, v in everything.items() if not k.startswith(tuple(keep_own))}
    check_state_dict({k: tuple(v.shape) for k, v in own.items()}, state, context)
    cast = {k: paddle.to_tensor(to_numpy(state[k]).astype(_numpy_dtype(own[k])))
            for k in own}
    # The kept tensors are set to themselves: Paddle warns about every key it is not given.
    cast.update((k, v) for k, v in everything.items() if k not in own)
    result = model.set_state_dict(cast)
    if result is not None:  # (missing, unexpected) on Paddle >= 2.x
        missing, unexpected = result
        missing = [k for k in missing if not k.startswith(tuple(keep_own))]
        if missing or unexpected:
            raise StateDictMismatch(missing, unexpected, context=context)
    return model


def _numpy_dtype(tensor):
    return np.dtype(str(tensor.dtype).replace('paddle.', ''))


def _dense_tensor(expression, namespace):
    """``eval('data', {'data': array})``: how ``paddle.save`` pickles a bare DenseTensor.
    Only that exact call is accepted; no expression is ever evaluated."""
    if expression != 'data' or not isinstance(namespace, dict) or set(namespace) != {'data'}:
        raise CheckpointReadError('refused builtins.eval with anything but a pickled tensor')
    return namespace['data']


PADDLE_GLOBALS = {**safe_pickle.NUMPY_GLOBALS, ('builtins', 'eval'): _dense_tensor}
_NAME_TABLE = 'StructuredToParameterName@@'
_SPLIT_TABLE = 'UnpackBigParamInfor@@'  # Paddle's spelling


def read_paddle_pickle(path):
    """Whatever ``paddle.save`` wrote to ``path`` (weights, optimizer state, any nest of
    dicts, lists and tensors), as plain Python and numeric NumPy arrays, without running
    code from the file. Tensors come back as arrays; large tensors that ``paddle.save``
    split into slices come back whole."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise WeightsNotFound(f'no such weights file: {printable(path)}')
    with open(path, 'rb') as f:
        tree = safe_pickle.load(f, printable(path), PADDLE_GLOBALS,
                                rebuild_tuple=_tensor_or_tuple)
    if isinstance(tree, dict):
        tree.pop(_NAME_TABLE, None)
        tree = _join_split_tensors(tree, path)
    return tree


def _tensor_or_tuple(items):
    """Paddle pickles a Tensor as the tuple ``(name, array)``: keep the array."""
    if len(items) == 2 and isinstance(items[0], str) and isinstance(items[1], np.ndarray):
        return items[1]
    return tuple(items)


def _join_split_tensors(state, path):
    """Undo ``paddle.save``'s splitting of tensors over 1 GiB (pickle protocols 2 and 3)."""
    table = state.pop(_SPLIT_TABLE, None)
    if table is None:
        return state
    try:
        for key, info in table.items():
            parts = [state.pop(part) for part in info['slices']]
            shape = safe_pickle.checked_shape(tuple(info['OriginShape']))
            flat = np.concatenate([np.asarray(p).reshape(-1) for p in parts])
            state[key] = flat.reshape(shape)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointReadError(f'{printable(path)} is corrupt: its table of split tensors '
                                  f'does not match its contents ({printable(exc)})') from None
    return state


def load_pdparams(path):
    """Read a ``.pdparams`` file as ``{key: numpy array}``, safely (no code runs)."""
    state = read_paddle_pickle(path)
    if not isinstance(state, dict):
        raise CheckpointReadError(f'{printable(path)} does not hold a state dict (found '
                                  f'{type(state).__name__})')
    bad = next((k for k, v in state.items()
                if not isinstance(k, str) or not isinstance(v, np.ndarray)), None)
    if bad is not None:
        raise CheckpointReadError(f'{printable(path)} is not a weights file: entry '
                                  f'{printable(repr(bad))[:60]} is not a named tensor')
    return state


def save_pdparams(state, path):
    """Write ``{key: array}`` to ``path`` atomically: a temp file in the same folder, then rename."""
    path = os.fspath(path)
    arrays = {k: np.ascontiguousarray(to_numpy(v)) for k, v in state.items()}
    odd = [k for k, v in arrays.items() if v.dtype.kind not in 'fiub']
    if odd:
        raise TypeError(f'not numeric tensors: {", ".join(odd[:5])}')
    with atomic_output(path) as tmp:
        # Plain arrays (not Tensors, which carry process-dependent names): the same
        # weights always give the same bytes.
        paddle.save(arrays, tmp)
    return path
