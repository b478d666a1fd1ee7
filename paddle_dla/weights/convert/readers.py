"""Checkpoint readers that never execute code from the file, and never let a file make
them allocate much more memory than it holds.

``.pth`` files in PyTorch's zip format (every ``torch.save`` since 1.6), in its legacy
format (the 2018 official releases) and ``.safetensors`` files are all parsed here with
NumPy alone: the unpickler (:mod:`paddle_dla.core.safe_pickle`) accepts only tensors,
storages and containers and refuses any other object; every tensor view is bounds-checked
for every stride; zip members are read once each, and the arrays a file may produce are
capped relative to the data it really holds. Safetensors files follow the rules of the
reference ``safetensors`` library (no duplicate names, no overlapping or unused bytes,
shapes that fit, a bounded header).
"""
import contextlib
import contextvars
import io
import json
import os
import struct
import zipfile

import numpy as np

from ...core import safe_pickle
from ...core.digests import CHUNK, MAX_CHECKPOINT_BYTES, Hasher, file_digests
from ...core.errors import CheckpointReadError, printable

__all__ = ['CheckpointReadError', 'read_checkpoint', 'read_safetensors', 'read_torch_checkpoint',
           'write_safetensors']

_SAFETENSORS_DTYPES = {
    'F64': np.float64, 'F32': np.float32, 'F16': np.float16, 'BF16': np.uint16,
    'I64': np.int64, 'I32': np.int32, 'I16': np.int16, 'I8': np.int8, 'U8': np.uint8,
    'BOOL': np.bool_,
}
_MAX_HEADER = 100_000_000      # the reference library's limit
# JSON nesting costs memory: a real header has a few brackets per tensor.
_MAX_HEADER_BRACKETS = 1_000_000
# What a file may make the readers allocate beyond the tensor data it holds: views of one
# storage (tied weights) may repeat it a few times, never more.
OUTPUT_FACTOR, OUTPUT_SLACK = 4, 16 << 20
# Zip members may be compressed (torch never does): at most this much expansion in all,
# and only with deflate, whose reader stops at the declared size.
ZIP_EXPANSION = 4
_ZIP_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)


# The file being converted, as read once: (absolute path, bytes) or None.
_SNAPSHOT = contextvars.ContextVar('paddle_dla_checkpoint_snapshot', default=None)


@contextlib.contextmanager
def snapshot(path):
    """Read ``path`` once; within the block, every reader and :func:`source_digests` see
    those bytes, not the file. The bytes whose digest decides what a file is are then the
    bytes that are converted, whatever happens to the file meanwhile."""
    path = os.fspath(path)
    with open(path, 'rb') as f:
        data = _read_capped(f, MAX_CHECKPOINT_BYTES)
    if data is None:
        raise CheckpointReadError(f'{printable(path)} is refused: it holds more than '
                                  f'{MAX_CHECKPOINT_BYTES:,} bytes, far more than any DLA '
                                  f'checkpoint')
    token = _SNAPSHOT.set((os.path.abspath(path), data))
    try:
        yield
    finally:
        _SNAPSHOT.reset(token)


def _read_capped(f, cap):
    """All of ``f``, or None when it holds more than ``cap`` bytes. Reads by the file's size:
    ``read(n)`` reserves ``n`` bytes before reading, so asking for the cap itself would
    reserve 2 GiB for a 70 MB checkpoint; a file that grows meanwhile is read in chunks."""
    size = os.fstat(f.fileno()).st_size
    if size > cap:
        return None
    first = f.read(size)
    parts, total = [first], len(first)
    while total <= cap:
        part = f.read(CHUNK)
        if not part:
            return parts[0] if len(parts) == 1 else b''.join(parts)
        parts.append(part)
        total += len(part)
    return None


def _held(path):
    held = _SNAPSHOT.get()
    return held[1] if held and held[0] == os.path.abspath(os.fspath(path)) else None


def source_open(path):
    """A binary reader of ``path``: its snapshot when one is held, else the file."""
    data = _held(path)
    return io.BytesIO(data) if data is not None else open(path, 'rb')


def source_size(path):
    data = _held(path)
    return len(data) if data is not None else os.path.getsize(path)


def source_digests(path):
    """The digests of what the readers will read of ``path``."""
    data = _held(path)
    if data is None:
        return file_digests(path)
    hasher = Hasher()
    hasher.update(data)
    return hasher.found()


def _bf16_to_f32(array):
    return (array.astype(np.uint32) << 16).view(np.float32)


def _no_duplicates(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise CheckpointReadError(f'duplicate entry {printable(key)!r} in the header')
        seen[key] = value
    return seen


def read_safetensors(path):
    """``{name: numpy array}`` from a ``.safetensors`` file; bfloat16 widens to float32."""
    name = printable(os.fspath(path))
    with source_open(path) as f:
        data = f.read()
    header, body = _safetensors_header(data, name)
    entries = _safetensors_entries(header, name)
    _check_tiling(entries, len(body), name)
    out = {}
    with safe_pickle.named_errors(name, 'safetensors file'):
        for begin, end, key, dtype, shape, code in entries:
            array = np.frombuffer(body[begin:end], dtype=dtype).reshape(shape).copy()
            out[key] = _bf16_to_f32(array) if code == 'BF16' else array
    return out


def _safetensors_header(data, name):
    """``(header dict, data bytes)``: a bounded, flat enough, duplicate-free JSON header."""
    if len(data) < 8:
        raise CheckpointReadError(f'{name} is truncated: not a safetensors file')
    (header_len,) = struct.unpack('<Q', data[:8])
    if header_len > min(_MAX_HEADER, len(data) - 8):
        raise CheckpointReadError(f'{name} is truncated or not a safetensors file '
                                  f'(header of {header_len} bytes in a {len(data)}-byte file)')
    raw = data[8:8 + header_len]
    if raw.count(b'[') + raw.count(b'{') > _MAX_HEADER_BRACKETS:
        raise CheckpointReadError(f'{name} has a corrupt safetensors header (more nesting than '
                                  f'any tensor table needs)')
    try:
        if not raw.startswith(b'{'):
            raise ValueError('the header is not a JSON object')
        header = json.loads(raw.decode('utf-8'), object_pairs_hook=_no_duplicates)
    except CheckpointReadError as exc:
        raise CheckpointReadError(f'{name} is corrupt: {exc}') from None
    except RecursionError:
        raise CheckpointReadError(f'{name} has a corrupt safetensors header (nested too '
                                  f'deeply)') from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointReadError(f'{name} has a corrupt safetensors header: '
                                  f'{printable(" ".join(str(exc).split()))[:100]}') from None
    return header, memoryview(data)[8 + header_len:]


def _safetensors_entries(header, name):
    """``[(begin, end, key, dtype, shape, dtype code)]`` sorted by offset, each consistent."""
    entries = []
    for key, info in header.items():
        if key == '__metadata__':
            if not (isinstance(info, dict) and all(isinstance(v, str) for v in info.values())):
                raise CheckpointReadError(f'{name}: corrupt __metadata__ (must map strings to '
                                          f'strings)')
            continue
        try:
            dtype = np.dtype(_SAFETENSORS_DTYPES[info['dtype']])
            shape = safe_pickle.checked_shape(info['shape'])
            begin, end = info['data_offsets']
            if type(begin) is not int or type(end) is not int or not 0 <= begin <= end:
                raise ValueError
        except (KeyError, TypeError, ValueError, CheckpointReadError):
            raise CheckpointReadError(f'{name}: unsupported or corrupt entry '
                                      f'{printable(key)!r}') from None
        if end - begin != dtype.itemsize * safe_pickle.element_count(shape):
            raise CheckpointReadError(f'{name}: entry {printable(key)!r} has shape '
                                      f'{list(shape)} but {end - begin} bytes of data')
        entries.append((begin, end, key, dtype, shape, info['dtype']))
    return sorted(entries, key=lambda e: (e[0], e[1]))


def _check_tiling(entries, size, name):
    """The tensors cover the data exactly, without overlaps or gaps, as the library requires."""
    position = 0
    for begin, end, key, *_ in entries:
        if begin != position:
            raise CheckpointReadError(f'{name} is corrupt: entry {printable(key)!r} '
                                      + ('overlaps another' if begin < position else
                                         'leaves a gap before it'))
        position = end
    if position != size:
        raise CheckpointReadError(f'{name} is truncated or corrupt: the header describes '
                                  f'{position} bytes of data, the file holds {size}')


def write_safetensors(state, path):
    """Write ``{name: numpy array}`` as ``.safetensors`` (readable by the safetensors package)."""
    codes = {np.dtype(v): k for k, v in _SAFETENSORS_DTYPES.items() if k != 'BF16'}
    header, offset, blobs = {}, 0, []
    for key in sorted(state):
        array = np.array(state[key], order='C')  # ascontiguousarray would make 0-d 1-d
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
# What a legacy (pre-1.6) torch.save file starts with: pickle protocol 2 and torch's magic number.
_LEGACY_MAGIC_NUMBER = 0x1950a86a20f9469cfc6c
_LEGACY_MAGIC = b'\x80\x02\x8a\x0a' + _LEGACY_MAGIC_NUMBER.to_bytes(10, 'little')
_LEGACY_PROTOCOL = 1001


class _StorageType:
    """Stands for ``torch.FloatStorage`` and its kin."""

    def __init__(self, kind):
        self.kind, self.dtype = kind, np.dtype(_STORAGES[kind])


class _StorageRef:
    """One storage a tensor views: its key in the file, its element count, and for legacy
    storage views the slice of a root storage."""

    def __init__(self, storage_type, key, numel, view=None):
        if not isinstance(storage_type, _StorageType) or not isinstance(key, str) or \
                type(numel) is not int or numel < 0:
            raise CheckpointReadError('corrupt storage record')
        self.dtype, self.kind, self.key, self.numel, self.view = (
            storage_type.dtype, storage_type.kind, key, numel, view)


class _Tensor(safe_pickle.Placeholder):
    """``torch._utils._rebuild_tensor_v2``: a view (offset, size, stride) of a storage,
    rebuilt once the storages have been read."""

    def __init__(self, storage, offset, size, stride, *unused):
        if not isinstance(storage, _StorageRef) or type(offset) is not int or offset < 0:
            raise CheckpointReadError('corrupt tensor record')
        self.storage, self.offset = storage, offset
        self.size = safe_pickle.checked_shape(size)
        self.stride = safe_pickle.checked_shape(stride)  # also refuses negative strides
        if len(self.stride) != len(self.size):
            raise CheckpointReadError('corrupt tensor record (size and stride differ in length)')


def _rebuild_parameter(data, *unused):
    return data


_TORCH_GLOBALS = {
    **safe_pickle.NUMPY_GLOBALS,
    ('torch._utils', '_rebuild_tensor_v2'): _Tensor,
    ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
    ('torch._utils', '_rebuild_parameter_with_state'): _rebuild_parameter,
    **{('torch', kind): _StorageType(kind) for kind in _STORAGES},
}


class _TensorBuilder:
    """Turns tensor records into arrays, checking each view against its storage and the
    total against what the file holds."""

    def __init__(self, name, storage_bytes):
        self.name = name
        self.budget = OUTPUT_FACTOR * storage_bytes + OUTPUT_SLACK
        self.storages = {}  # key -> flat array

    def __call__(self, tensor):
        ref = tensor.storage
        flat = self.storages.get(ref.key)
        if flat is None:
            raise CheckpointReadError(f'{self.name} is corrupt: storage {printable(ref.key)!r} '
                                      f'is missing')
        if ref.view is not None:
            begin, length = ref.view
            if not (type(begin) is int and type(length) is int and begin >= 0 and length >= 0
                    and begin + length <= len(flat)):
                raise CheckpointReadError(f'{self.name} is corrupt: a storage view runs past '
                                          f'its storage')
            flat = flat[begin:begin + length]
        if flat.dtype != ref.dtype:
            flat = flat.view(ref.dtype) if flat.nbytes % ref.dtype.itemsize == 0 else None
            if flat is None:
                raise CheckpointReadError(f'{self.name} is corrupt: storage types disagree')
        count = safe_pickle.element_count(tensor.size)
        if count:
            last = tensor.offset + sum((n - 1) * st for n, st in zip(tensor.size, tensor.stride))
            if last >= len(flat):
                raise CheckpointReadError(f'{self.name} is corrupt: a tensor of shape '
                                          f'{list(tensor.size)} runs past its storage')
        self.budget -= count * ref.dtype.itemsize
        if self.budget < 0:
            raise CheckpointReadError(f'{self.name} is refused: its tensors would take far '
                                      f'more memory than the data the file holds')
        if not count:
            array = np.zeros(tensor.size, ref.dtype)
        else:
            array = np.lib.stride_tricks.as_strided(
                flat[tensor.offset:], shape=tensor.size,
                strides=[st * flat.itemsize for st in tensor.stride]).copy()
        return _bf16_to_f32(array) if ref.kind == 'BFloat16Storage' else array


def _read_torch_zip(path, name):
    """``torch.load`` for the zip format, without torch and without running any code."""
    with source_open(path) as stream, zipfile.ZipFile(stream) as archive:
        infos = {info.filename: info for info in archive.infolist()}
        odd = next((i for i in infos.values() if i.compress_type not in _ZIP_METHODS
                    or i.flag_bits & 0x1), None)
        if odd is not None:
            raise CheckpointReadError(f'{name} is refused: member {printable(odd.filename)} is '
                                      f'encrypted or compressed in a way torch never writes')
        pickles = [n for n in infos if n.endswith('/data.pkl') or n == 'data.pkl']
        if len(pickles) != 1:
            raise CheckpointReadError(f'{name} is a zip file but not a PyTorch checkpoint')
        expanded = sum(info.file_size for info in infos.values())
        if expanded > ZIP_EXPANSION * source_size(path) + (1 << 20):
            raise CheckpointReadError(f'{name} is refused: its members would expand to '
                                      f'{expanded:,} bytes from a {source_size(path):,}-byte '
                                      f'file')
        root = pickles[0][:-len('data.pkl')]

        def member(member_name):
            info = infos.get(member_name)
            if info is None:
                raise CheckpointReadError(f'{name} is corrupt: {printable(member_name)} is '
                                          f'missing')
            with archive.open(info) as f:
                data = f.read(info.file_size + 1)
            if len(data) != info.file_size:
                raise CheckpointReadError(f'{name} is corrupt: {printable(member_name)} has '
                                          f'another size than its directory says')
            return data

        if root + 'byteorder' in infos and member(root + 'byteorder').strip() not in \
                (b'little', b''):
            raise CheckpointReadError(f'{name} was saved on a big-endian machine; unsupported')
        storage_bytes = sum(i.file_size for n, i in infos.items() if n.startswith(root + 'data/'))
        builder = _TensorBuilder(name, storage_bytes)

        def storage(pid):
            if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == 'storage'):
                raise CheckpointReadError(f'{name}: unsupported storage record')
            ref = _StorageRef(pid[1], pid[2], pid[4])
            if ref.key not in builder.storages:  # each member is read once
                data = member(f'{root}data/{ref.key}')
                if len(data) != ref.numel * ref.dtype.itemsize:
                    raise CheckpointReadError(f'{name} is corrupt: storage '
                                              f'{printable(ref.key)!r} has {len(data)} bytes, '
                                              f'its record says {ref.numel} elements')
                builder.storages[ref.key] = np.frombuffer(data, ref.dtype)
            return ref

        with archive.open(infos[pickles[0]]) as f:
            data_pkl = f.read(infos[pickles[0]].file_size + 1)
        tree = safe_pickle.load_raw(io.BytesIO(data_pkl), name, _TORCH_GLOBALS, storage,
                                    size=len(data_pkl), what='PyTorch checkpoint')
        return safe_pickle.materialise(tree, name, _resolver(builder))


def _resolver(builder):
    def resolve(placeholder):
        return builder(placeholder) if isinstance(placeholder, _Tensor) else placeholder.resolve()
    return resolve


def _read_torch_legacy(path, name):
    """``torch.load`` for the legacy format (PyTorch < 1.6): five pickles, then the raw
    storages in the order the fifth lists, each an int64 element count and its bytes."""
    size = source_size(path)
    refs = {}

    def storage(pid):
        if not (isinstance(pid, tuple) and len(pid) == 6 and pid[0] == 'storage'):
            kind = pid[0] if isinstance(pid, tuple) and pid else '?'
            raise CheckpointReadError(f'{name} is refused: it holds a pickled '
                                      f'{printable(kind)!s:.20} (a module or other object), not '
                                      f'just tensors; save model.state_dict() instead')
        _, storage_type, key, _location, numel, view = pid
        if type(key) is not str:
            raise CheckpointReadError(f'{name} is corrupt: a storage key is not a string')
        if view is not None:
            if not (isinstance(view, tuple) and len(view) == 3):
                raise CheckpointReadError(f'{name}: corrupt storage view record')
            ref = _StorageRef(storage_type, key, numel, view=(view[1], view[2]))
        else:
            ref = _StorageRef(storage_type, key, numel)
        known = refs.setdefault(key, ref)
        if known.numel != ref.numel:
            raise CheckpointReadError(f'{name} is corrupt: storage {printable(key)!r} has two '
                                      f'sizes')
        return ref

    with source_open(path) as f:
        def header():
            return safe_pickle.load(f, name, {}, size=size - f.tell(), what='PyTorch checkpoint')
        if header() != _LEGACY_MAGIC_NUMBER:
            raise CheckpointReadError(f'{name} is corrupt (bad magic number)')
        if header() != _LEGACY_PROTOCOL:
            raise CheckpointReadError(f'{name} uses an unknown legacy PyTorch protocol')
        info = header()
        if not isinstance(info, dict) or info.get('little_endian') is not True:
            raise CheckpointReadError(f'{name} was saved on a big-endian machine; unsupported')
        tree = safe_pickle.load_raw(f, name, _TORCH_GLOBALS, storage, size=size - f.tell(),
                                    what='PyTorch checkpoint')
        keys = header()
        if not isinstance(keys, list) or not all(type(k) is str for k in keys) or \
                sorted(keys) != sorted(refs):
            raise CheckpointReadError(f'{name} is corrupt: its storage list does not match '
                                      f'its tensors')
        builder = _TensorBuilder(name, size)
        for key in keys:
            ref = refs[key]
            head = f.read(8)
            nbytes = ref.numel * ref.dtype.itemsize
            if len(head) != 8 or struct.unpack('<q', head)[0] != ref.numel or \
                    nbytes > size - f.tell():
                raise CheckpointReadError(f'{name} is truncated or corrupt at storage '
                                          f'{printable(key)!r}')
            builder.storages[key] = np.frombuffer(f.read(nbytes), ref.dtype)
    return safe_pickle.materialise(tree, name, _resolver(builder))


def read_torch_checkpoint(path):
    """Load a ``.pth`` file: tensors and containers only, any other object is refused.
    No format needs torch."""
    name = printable(os.fspath(path))
    with source_open(path) as f:
        head = f.read(len(_LEGACY_MAGIC))
    if head == _LEGACY_MAGIC:
        with safe_pickle.named_errors(name, 'PyTorch checkpoint'):
            return _read_torch_legacy(path, name)
    if head.startswith(b'PK\x03\x04'):
        try:
            with source_open(path) as f:
                is_zip = zipfile.is_zipfile(f)
        except OSError:
            is_zip = False
        if not is_zip:
            raise CheckpointReadError(f'{name} is truncated (an incomplete zip archive); '
                                      f'download it again')
        with safe_pickle.named_errors(name, 'PyTorch checkpoint (corrupt zip archive)'):
            return _read_torch_zip(path, name)
    with source_open(path) as f:  # a bare pickle: only what a state dict holds
        return safe_pickle.load(f, name, _TORCH_GLOBALS, what='PyTorch checkpoint')


def read_checkpoint(path):
    """Read any supported checkpoint file; the format is told by its first bytes."""
    path = os.fspath(path)
    if os.path.isdir(path):
        raise CheckpointReadError(f'{printable(path)} is a folder, not a checkpoint file')
    if not os.path.isfile(path):
        raise FileNotFoundError(f'no such checkpoint: {printable(path)}')
    with source_open(path) as f:
        head = f.read(16)
    if not head:
        raise CheckpointReadError(f'{printable(path)} is empty')
    if path.endswith('.safetensors') or (len(head) > 8 and head[8:9] == b'{'):
        return read_safetensors(path)
    return read_torch_checkpoint(path)
