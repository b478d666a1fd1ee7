"""Key and value mapping between PyTorch DLA state dicts and ours.

Module names are identical on both sides; only BatchNorm statistics are renamed
(``running_mean`` -> ``_mean``, ``running_var`` -> ``_variance``) and PyTorch's
``num_batches_tracked`` counters have no Paddle counterpart. Nothing is
transposed: the classifier is a 1x1 convolution in both.
"""
import functools

import numpy as np
import paddle

from ...core.errors import printable
from ...models.dla import DLA
from ...models.imagenet import NUM_CLASSES
from ...models.variants import get_config, state_num_classes
from ..checkpoint import StateDictMismatch, check_state_dict, to_numpy

_TORCH_TO_PADDLE_LEAF = {'running_mean': '_mean', 'running_var': '_variance'}
_PADDLE_TO_TORCH_LEAF = {v: k for k, v in _TORCH_TO_PADDLE_LEAF.items()}
TORCH_ONLY_LEAVES = ('num_batches_tracked',)


def _rename_leaf(key, table):
    head, dot, leaf = key.rpartition('.')
    return head + dot + table.get(leaf, leaf)


def to_paddle_key(key):
    return _rename_leaf(key, _TORCH_TO_PADDLE_LEAF)


def to_torch_key(key):
    return _rename_leaf(key, _PADDLE_TO_TORCH_LEAF)


@functools.lru_cache(maxsize=None)
def _paddle_shapes(variant, num_classes):
    with paddle.LazyGuard():  # shapes only: no parameter is initialised
        model = DLA(get_config(variant), num_classes=num_classes)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def expected_torch_shapes(variant, num_classes=NUM_CLASSES):
    """``{torch key: shape}`` of a clean (timm-layout) checkpoint of ``variant``."""
    return {to_torch_key(k): s for k, s in _paddle_shapes(get_config(variant).name,
                                                           num_classes).items()}


def convert_state_dict(state_dict, variant, dtype='float32', source='checkpoint'):
    """Map a timm-layout PyTorch state dict (``name -> tensor/array``) to ours.

    The class count is read from ``fc.weight``. Any missing, unexpected or
    mis-shaped key raises :class:`paddle_dla.weights.checkpoint.StateDictMismatch`
    naming ``source`` and the keys as they appear in the PyTorch file. Floating values are
    returned as ``dtype`` numpy arrays.
    """
    name = get_config(variant).name
    arrays = {k: to_numpy(v) for k, v in state_dict.items()
              if k.rpartition('.')[2] not in TORCH_ONLY_LEAVES}
    expected = expected_torch_shapes(name, state_num_classes(arrays))
    check_state_dict(expected, arrays, context=f'{source} does not match {name}')
    not_float = [f'{printable(k)} ({arrays[k].dtype})' for k in expected
                 if not np.issubdtype(arrays[k].dtype, np.floating)]
    if not_float:
        raise StateDictMismatch(context=f'{source} does not match {name}: tensors that are '
                                f'not floating point where parameters belong: '
                                f'{", ".join(not_float[:8])}')
    # The model's own order, whatever the file's; every value a float parameter.
    return {to_paddle_key(key): arrays[key].astype(dtype) for key in expected}
