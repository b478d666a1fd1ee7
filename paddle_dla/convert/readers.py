"""Checkpoint readers that never execute code from the file.

``.pth`` files go through ``torch.load(weights_only=True)`` (tensors and plain
containers only); ``.safetensors`` files are parsed here, with NumPy alone.
"""
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


def read_torch_checkpoint(path):
    """Load a ``.pth`` file with ``torch.load(weights_only=True)``: tensors and containers only.

    torch is needed for this step alone; a pickle that asks to run code is refused.
    """
    name = os.path.basename(path)
    try:
        import torch
    except ImportError as exc:
        raise CheckpointReadError(
            f'reading {name} needs PyTorch: pip install torch '
            f'(or convert the .safetensors file of the same weights, which needs no torch)') from exc
    if zipfile.is_zipfile(path) is False and _looks_truncated_zip(path):
        raise CheckpointReadError(f'{name} is truncated (an incomplete zip archive); '
                                  f'download it again')
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except pickle.UnpicklingError as exc:
        if 'Unsupported global' not in str(exc):  # not a pickle we understand at all
            raise CheckpointReadError(f'{name} is not a readable PyTorch checkpoint (not a '
                                      f'PyTorch file, or corrupt)') from exc
        # A pickle asking for objects that need code to rebuild.
        found = re.search(r'Unsupported global: GLOBAL (\S+)', str(exc))
        what = f' ({found.group(1)})' if found else ''
        raise CheckpointReadError(
            f'{name} is not a readable PyTorch checkpoint: refused, it holds Python objects '
            f'besides tensors{what} and unpickling them could run code; save '
            f'model.state_dict() instead') from exc
    except Exception as exc:  # truncated zip, foreign pickle, ...
        raise CheckpointReadError(
            f'{name} is not a readable PyTorch checkpoint ({_first_line(exc)})') from exc


def _looks_truncated_zip(path):
    with open(path, 'rb') as f:
        return f.read(4) == b'PK\x03\x04'


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
