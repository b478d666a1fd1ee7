"""Checkpoint readers that never execute code from the file.

``.pth`` files in PyTorch's zip format (every ``torch.save`` since 1.6) and
``.safetensors`` files are parsed here with NumPy alone: the unpickler accepts only
tensors, storages and ordered dicts, and refuses any other object. Legacy ``.pth``
files (older PyTorch) go through ``torch.load(weights_only=True)``, equally restricted.
"""
import collections
import json
import os
import pickle
import re
import struct
import zipfile

import numpy as np


class CheckpointReadError(ValueError):
    """A checkpoint file could not be read safely."""


_SAFETENSORS_DTYPES = {
    'F64': np.float64, 'F32': np.float32, 'F16': np.float16, 'BF16': np.uint16,
    'I64': np.int64, 'I32': np.int32, 'I16': np.int16, 'I8': np.int8, 'U8': np.uint8,
    'BOOL': np.bool_,
}
_MAX_HEADER = 100 << 20


def _first_line(exc):
    text = re.sub(r'\x1b\[[0-9;]*m', '', str(exc)).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def read_safetensors(path):
    """``{name: numpy array}`` from a ``.safetensors`` file; bfloat16 widens to float32."""
    with open(path, 'rb') as f:
        data = f.read()
    name = os.path.basename(path)
    if len(data) < 8:
        raise CheckpointReadError(f'{name} is truncated: not a safetensors file')
    (header_len,) = struct.unpack('<Q', data[:8])
    if header_len > min(_MAX_HEADER, len(data) - 8):
        raise CheckpointReadError(f'{name} is truncated or not a safetensors file '
                                  f'(header of {header_len} bytes in a {len(data)}-byte file)')
    try:
        header = json.loads(data[8:8 + header_len].decode('utf-8'))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointReadError(f'{name} has a corrupt safetensors header: '
                                  f'{_first_line(exc)}') from exc
    if not isinstance(header, dict):
        raise CheckpointReadError(f'{name} has a corrupt safetensors header')
    body = memoryview(data)[8 + header_len:]
    out = {}
    for key, info in header.items():
        if key == '__metadata__':
            continue
        try:
            dtype = np.dtype(_SAFETENSORS_DTYPES[info['dtype']])
            shape = tuple(int(s) for s in info['shape'])
            begin, end = (int(o) for o in info['data_offsets'])
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointReadError(f'{name}: unsupported or corrupt entry {key!r}') from exc
        if not 0 <= begin <= end <= len(body) or end - begin != dtype.itemsize * int(np.prod(shape)):
            raise CheckpointReadError(f'{name} is truncated or corrupt at tensor {key!r}')
        array = np.frombuffer(body[begin:end], dtype=dtype).reshape(shape).copy()
        if info['dtype'] == 'BF16':
            array = (array.astype(np.uint32) << 16).view(np.float32)
        out[key] = array
    return out


def write_safetensors(state, path):
    """Write ``{name: numpy array}`` as ``.safetensors`` (readable by the safetensors package)."""
    codes = {np.dtype(v): k for k, v in _SAFETENSORS_DTYPES.items() if k != 'BF16'}
    header, offset, blobs = {}, 0, []
    for key in sorted(state):
        array = np.ascontiguousarray(state[key])
        blob = array.tobytes()
        header[key] = {'dtype': codes[array.dtype], 'shape': list(array.shape),
                       'data_offsets': [offset, offset + len(blob)]}
        offset += len(blob)
        blobs.append(blob)
    raw = json.dumps(header, separators=(',', ':')).encode('utf-8')
    raw += b' ' * (-len(raw) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(raw)) + raw)
        for blob in blobs:
            f.write(blob)


_STORAGES = {
    'DoubleStorage': np.float64, 'FloatStorage': np.float32, 'HalfStorage': np.float16,
    'BFloat16Storage': np.uint16, 'LongStorage': np.int64, 'IntStorage': np.int32,
    'ShortStorage': np.int16, 'CharStorage': np.int8, 'ByteStorage': np.uint8,
    'BoolStorage': np.bool_,
}
_REFUSED = ('refused, it holds Python objects besides tensors ({}) and unpickling them could '
            'run code; save model.state_dict() instead')


# What a legacy (pre-1.6) torch.save file starts with: pickle protocol 2 and torch's magic number.
_LEGACY_MAGIC = b'\x80\x02\x8a\x0a' + (0x1950a86a20f9469cfc6c).to_bytes(10, 'little')


class _Storage:
    def __init__(self, name):
        self.name = name


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None,
                    metadata=None):
    """A torch tensor view (offset, size, stride over a storage) as a numpy array."""
    flat, is_bf16 = storage
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    last = offset + sum((n - 1) * st for n, st in zip(size, stride)) if all(size) else offset - 1
    if offset < 0 or last >= len(flat):
        raise CheckpointReadError('corrupt tensor: its view runs past its storage')
    array = np.lib.stride_tricks.as_strided(flat[offset:], shape=size,
                                            strides=[st * flat.itemsize for st in stride]).copy()
    return (array.astype(np.uint32) << 16).view(np.float32) if is_bf16 else array


def _rebuild_parameter(data, requires_grad=False, hooks=None):
    return data


def _read_torch_zip(path):
    """``torch.load`` for the zip format, without torch and without running any code."""
    name = os.path.basename(path)
    with zipfile.ZipFile(path) as archive:
        pickles = [n for n in archive.namelist() if n.endswith('/data.pkl') or n == 'data.pkl']
        if len(pickles) != 1:
            raise CheckpointReadError(f'{name} is a zip file but not a PyTorch checkpoint')
        root = pickles[0][:-len('data.pkl')]
        if root + 'byteorder' in archive.namelist() and \
                archive.read(root + 'byteorder').strip() not in (b'little', b''):
            raise CheckpointReadError(f'{name} was saved on a big-endian machine; unsupported')

        def storage(kind, key):
            return (np.frombuffer(archive.read(f'{root}data/{key}'), dtype=_STORAGES[kind]),
                    kind == 'BFloat16Storage')

        with archive.open(pickles[0]) as f:
            return _restricted_unpickler(f, name, storage).load()


def _restricted_unpickler(f, name, storage=None):
    """An unpickler that rebuilds tensors, storages and ordered dicts, and nothing else."""

    class Unpickler(pickle.Unpickler):
        def find_class(self, module, attr):
            if (module, attr) == ('collections', 'OrderedDict'):
                return collections.OrderedDict
            if module == 'torch._utils' and attr == '_rebuild_tensor_v2':
                return _rebuild_tensor
            if module == 'torch._utils' and attr == '_rebuild_parameter':
                return _rebuild_parameter
            if module == 'torch' and attr in _STORAGES:
                return _Storage(attr)
            raise CheckpointReadError(f'{name} is not a readable PyTorch checkpoint: '
                                      + _REFUSED.format(f'{module}.{attr}'))

        def persistent_load(self, pid):
            if storage is None or not (isinstance(pid, tuple) and len(pid) == 5
                                       and pid[0] == 'storage' and isinstance(pid[1], _Storage)):
                raise CheckpointReadError(f'{name}: unsupported storage record {pid!r:.60}')
            return storage(pid[1].name, str(pid[2]))

    return Unpickler(f)


def read_torch_checkpoint(path):
    """Load a ``.pth`` file: tensors and containers only, any other object is refused.

    The zip format needs no torch; a legacy file goes through
    ``torch.load(weights_only=True)`` and so needs PyTorch.
    """
    name = os.path.basename(path)
    with open(path, 'rb') as f:
        head = f.read(len(_LEGACY_MAGIC))
    if head != _LEGACY_MAGIC:
        try:
            if zipfile.is_zipfile(path):
                return _read_torch_zip(path)
            if head.startswith(b'PK\x03\x04'):
                raise CheckpointReadError(f'{name} is truncated (an incomplete zip archive); '
                                          f'download it again')
            with open(path, 'rb') as f:  # a bare pickle: only what a state dict holds
                return _restricted_unpickler(f, name).load()
        except CheckpointReadError:
            raise
        except Exception as exc:  # corrupt members, bad pickle opcodes, ...
            raise CheckpointReadError(f'{name} is not a readable PyTorch checkpoint (not a '
                                      f'PyTorch file, or corrupt: {_first_line(exc)})') from exc
    try:
        import torch
    except ImportError as exc:
        raise CheckpointReadError(
            f'reading {name} needs PyTorch, as it is in the legacy (pre-1.6) format: pip install '
            f'torch (or convert a .safetensors file of the same weights)') from exc
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as exc:
        if 'Unsupported global' not in str(exc):  # not a pickle we understand at all
            raise CheckpointReadError(f'{name} is not a readable PyTorch checkpoint (not a '
                                      f'PyTorch file, or corrupt)') from exc
        # A pickle asking for objects that need code to rebuild.
        found = re.search(r'Unsupported global: GLOBAL (\S+)', str(exc))
        what = f' ({found.group(1)})' if found else ''
        raise CheckpointReadError(f'{name} is not a readable PyTorch checkpoint: '
                                  + _REFUSED.format(what.strip(' ()') or 'unknown')) from exc
    except Exception as exc:  # truncated zip, foreign pickle, ...
        raise CheckpointReadError(
            f'{name} is not a readable PyTorch checkpoint ({_first_line(exc)})') from exc


def read_checkpoint(path):
    """Read any supported checkpoint file; the format is told by its first bytes."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CheckpointReadError(f'{path} is a folder, not a checkpoint file')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'no such checkpoint: {path}')
    with open(path, 'rb') as f:
        head = f.read(16)
    if not head:
        raise CheckpointReadError(f'{os.path.basename(path)} is empty')
    if path.endswith('.safetensors') or (len(head) > 8 and head[8:9] == b'{'):
        return read_safetensors(path)
    return read_torch_checkpoint(path)
