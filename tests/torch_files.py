"""PyTorch checkpoint files written record by record, without torch: files torch.save refuses
to write (for the hostile-input tests), and plain state dicts for the tests that need a
``.pth`` but not the oracle's values (so they run where torch is not installed).
test_hostile_weights.py checks that torch itself reads what this writes."""
import collections
import io
import pickle
import zipfile

import numpy as np

from paddle_dla.weights.convert.layouts import dead_key_shapes
from paddle_dla.weights.convert.mapping import expected_torch_shapes


class _Global:
    """``module.name`` as the pickle names it, written without importing it."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self):  # the pickler accepts only callables as reduce functions
        raise NotImplementedError


FLOAT_STORAGE = _Global('torch', 'FloatStorage')
REBUILD_TENSOR = _Global('torch._utils', '_rebuild_tensor_v2')
STORAGES = {np.dtype('float32'): FLOAT_STORAGE, np.dtype('int64'): _Global('torch', 'LongStorage')}


class Storage:
    def __init__(self, data, key='0', kind=FLOAT_STORAGE, numel=None):
        self.data, self.key, self.kind = data, key, kind
        self.numel = len(data) // 4 if numel is None else numel


class View:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


class _Writer(pickle._Pickler):  # the Python pickler: its save() can be extended
    def persistent_id(self, obj):
        if isinstance(obj, Storage):
            return ('storage', obj.kind, obj.key, 'cpu', obj.numel)
        return None

    def save(self, obj, save_persistent_id=True):
        if isinstance(obj, _Global):
            self.write(pickle.GLOBAL + f'{obj.module}\n{obj.name}\n'.encode())
        elif isinstance(obj, View):
            self.save_reduce(REBUILD_TENSOR, (obj.storage, obj.offset, tuple(obj.size),
                                              tuple(obj.stride), False,
                                              collections.OrderedDict()), obj=obj)
        else:
            super().save(obj, save_persistent_id)


def torch_zip(path, obj, storages, compress=False):
    """Write ``obj`` as torch's zip format would, with ``storages`` as its data members."""
    buffer = io.BytesIO()
    _Writer(buffer, protocol=2).dump(obj)
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, 'w', method) as archive:
        archive.writestr('archive/data.pkl', buffer.getvalue())
        archive.writestr('archive/byteorder', 'little')
        archive.writestr('archive/version', '3\n')
        for storage in storages:
            archive.writestr(f'archive/data/{storage.key}', storage.data)
    return path


def save_state_dict(state, path):
    """``{name: float32 or int64 array}`` as torch.save writes a state dict of tensors."""
    views, storages = {}, []
    for i, (name, array) in enumerate(state.items()):
        array = np.asarray(array, order='C')
        storages.append(Storage(array.tobytes(), str(i), STORAGES[array.dtype], array.size))
        strides = tuple(s // array.itemsize for s in array.strides)
        views[name] = View(storages[-1], 0, array.shape, strides)
    return torch_zip(path, collections.OrderedDict(views), storages)


def official_layout(variant, seed=0, dead_keys=True):
    """Random values under every key an official file of ``variant`` has, its dead
    ``project`` entries and the BatchNorm counters included (a timm file's keys with
    ``dead_keys=False``)."""
    rng = np.random.default_rng(seed)
    shapes = {}
    for key, shape in expected_torch_shapes(variant).items():
        shapes[key] = shape
        if key.endswith('.running_var'):
            shapes[key[:-len('running_var')] + 'num_batches_tracked'] = ()
    if dead_keys:
        shapes.update(dead_key_shapes(variant))
    state = {}
    for key, shape in shapes.items():
        if key.endswith('num_batches_tracked'):
            state[key] = np.array(5, np.int64)
        elif key.endswith('running_var'):
            state[key] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            state[key] = rng.normal(0, 0.1, shape).astype(np.float32)
    return state
