"""The files of an exported model, read and checked without running anything.

An export is ``<prefix>.json`` (Paddle 3) or ``<prefix>.pdmodel`` (Paddle 2.6), with
``<prefix>.pdiparams`` and our ``<prefix>.dla.json`` metadata. Every engine opens it
through :func:`locate`, so that damaged files are named the same way whichever runs them.
"""
import json
import os
import struct

import numpy as np

from ..core.errors import PaddleDLAError, one_line, printable
from ..models.dense_variants import MAX_HEADS, DenseInput
from ..models.preprocessing import Preprocessing
from ..models.registry import TASKS
from .engines import DEVICE_PATTERN, INT8, ONNXRUNTIME, OPENVINO, PRECISIONS

MODEL_SUFFIXES = ('.json', '.pdmodel')
PARAMS_SUFFIX = '.pdiparams'
META_SUFFIX = '.dla.json'
# The INT8 model `paddle-dla quantize` adds to an export, by the engine that runs it: an
# OpenVINO IR, or an ONNX model with quantize-dequantize pairs.
INT8_FILES = {OPENVINO: ('.int8.xml', '.int8.bin'), ONNXRUNTIME: ('.int8.onnx',)}
_MAX_META_BYTES = 1 << 20  # what export writes is about 20 kB (1000 class names)


class ExportedModelError(PaddleDLAError, FileNotFoundError):
    """No exported model where one was expected."""


class ModelFileError(PaddleDLAError, ValueError):
    """A file of an exported model is damaged or incomplete; the message names it."""

    may_mean_a_full_disk = True  # paddle.jit.save truncates silently when the disk fills



def recipe_of(meta):
    """The preprocessing an export recorded, or None for exports that recorded none."""
    return Preprocessing.from_dict(meta['preprocessing']) if 'preprocessing' in meta else None


def dense_input_of(meta):
    """A dense model's input recipe as its export recorded it, or None."""
    return DenseInput.from_dict(meta['input']) if 'input' in meta else None



def int8_engine(meta):
    """The engine of the INT8 model an export records (OpenVINO for exports that name none),
    or None."""
    recorded = meta.get('int8')
    if not isinstance(recorded, dict):
        return None
    engine = recorded.get('engine', OPENVINO)
    return engine if isinstance(engine, str) and engine in INT8_FILES else None


def int8_model_file(prefix, meta):
    """The INT8 model an export carries (recorded in its metadata, every file present), or
    None."""
    engine = int8_engine(meta)
    if engine is None or not all(os.path.isfile(prefix + s) for s in INT8_FILES[engine]):
        return None
    return prefix + INT8_FILES[engine][0]


def check_int8_files(prefix, meta):
    """An export whose metadata records an INT8 model must carry its files: one deleted or
    never copied would otherwise leave the float model running silently in its place."""
    engine = int8_engine(meta)
    missing = [prefix + s for s in INT8_FILES.get(engine, ()) if not os.path.isfile(prefix + s)]
    if missing:
        raise ModelFileError(f'{printable(prefix + META_SUFFIX)} records an INT8 model, but '
                             f'{printable(missing[0])} is missing; make it again with: '
                             f'paddle-dla quantize --exported {printable(prefix)} ...')


def model_file_of(prefix):
    return next((prefix + s for s in MODEL_SUFFIXES if os.path.isfile(prefix + s)), None)


def check_model_file(path, shown):
    """A truncated program file: ``.json`` must parse, ``.pdmodel`` must be a ProgramDesc."""
    with open(path, 'rb') as f:
        data = f.read()
    try:
        if path.endswith('.json'):
            json.loads(data)
        else:
            from paddle.base.proto import framework_pb2
            framework_pb2.ProgramDesc().ParseFromString(data)
    except Exception as exc:  # noqa: BLE001 - any parse failure means an incomplete file
        raise ModelFileError(f'{printable(shown)} is incomplete or corrupt '
                             f'({len(data)} bytes; {one_line(exc)})') from None



_DTYPE_BYTES = {0: 1, 1: 2, 2: 4, 3: 8, 4: 2, 5: 4, 6: 8, 19: 8, 20: 1, 21: 1, 22: 2, 23: 8,
                24: 16, 32: 1, 33: 1, 36: 2, 37: 4, 38: 8}
_MAX_DESC_BYTES = 1 << 12
_MAX_LOD_LEVELS = 16


def tensor_shapes(path, shown=None):
    """The shapes of the tensors in a ``.pdiparams`` file, read from their headers (the data
    is skipped, so this is fast for any size). Raises :class:`ModelFileError` naming the
    file when it is truncated or not a parameters file: Paddle's own loader names neither
    the file nor where it ends."""
    shown = printable(shown or path)
    size = os.path.getsize(path)
    shapes = []
    with open(path, 'rb') as f:
        while f.tell() < size:
            try:
                shapes.append(_read_tensor(f, size))
            except ValueError as exc:
                raise ModelFileError(f'{shown} is corrupt or truncated: tensor {len(shapes)} '
                                     f'{exc} ({size} bytes in all)') from None
    if not shapes:
        raise ModelFileError(f'{shown} is empty: an exported model holds its parameters there')
    return shapes


def _read_tensor(f, size):
    """One tensor as Paddle's ``SerializeToStream`` writes it; the file is left after it."""
    version, lod_levels = _unpack(f, '<IQ')
    if version != 0 or lod_levels > _MAX_LOD_LEVELS:
        raise ValueError(f'has an unknown header (version {version}, {lod_levels} LoD levels)')
    for _ in range(lod_levels):
        (nbytes,) = _unpack(f, '<Q')
        _skip(f, nbytes, size)
    version, desc_size = _unpack(f, '<Ii')
    if version != 0 or not 0 < desc_size <= _MAX_DESC_BYTES:
        raise ValueError(f'has an unknown description (version {version}, {desc_size} bytes)')
    desc = f.read(desc_size)
    if len(desc) != desc_size:
        raise ValueError('ends inside its description')
    dtype, dims = _tensor_desc(desc)
    if dtype not in _DTYPE_BYTES or any(d < 0 for d in dims):
        raise ValueError(f'has an unknown type {dtype} or shape {dims}')
    _skip(f, int(np.prod(dims, dtype=object)) * _DTYPE_BYTES[dtype], size)
    return tuple(dims)


def _unpack(f, fmt):
    n = struct.calcsize(fmt)
    data = f.read(n)
    if len(data) != n:
        raise ValueError('ends inside its header')
    return struct.unpack(fmt, data)


def _skip(f, nbytes, size):
    left = size - f.tell()
    if nbytes > left:
        raise ValueError(f'ends inside its data ({left} of {nbytes} bytes present)')
    f.seek(nbytes, os.SEEK_CUR)


def _tensor_desc(desc):
    """(data type, dims) from the TensorDesc protobuf: field 1 the type, 2 the dims."""
    dtype, dims, i = None, [], 0
    while i < len(desc):
        key, i = _varint(desc, i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, i = _varint(desc, i)
            if field == 1:
                dtype = value
            elif field == 2:
                dims.append(_signed(value))
        elif wire == 2:  # packed dims, or a field this reader does not need
            length, i = _varint(desc, i)
            end = i + length
            if end > len(desc):
                raise ValueError('ends inside its description')
            while field == 2 and i < end:
                value, i = _varint(desc, i)
                dims.append(_signed(value))
            i = end
        else:
            raise ValueError(f'has an unreadable description (wire type {wire})')
    return dtype, dims


def _varint(data, i):
    value = shift = 0
    while shift < 70:
        if i >= len(data):
            raise ValueError('ends inside its description')
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, i
        shift += 7
    raise ValueError('has an unreadable description (overlong number)')


def _signed(value):
    return value - (1 << 64) if value >= 1 << 63 else value



def resolve_prefix(path):
    """Accept a path prefix, a model/params file, or a folder holding one exported model."""
    path = os.fspath(path)
    if os.path.isdir(path):
        params = sorted(f for f in os.listdir(path) if f.endswith(PARAMS_SUFFIX))
        if len(params) != 1:
            raise ExportedModelError(
                f'{path} holds {len(params)} exported models (.pdiparams); name one by its '
                f'path prefix' if params else f'no exported model (.pdiparams) in {path}; '
                f'create one with: paddle-dla export --model dla_34 --out {path}')
        return os.path.join(path, params[0][:-len(PARAMS_SUFFIX)])
    int8_files = (suffix for files in INT8_FILES.values() for suffix in files)
    # the longer suffixes first: '.dla.json' and '.int8.*' before '.json'
    for suffix in (META_SUFFIX, *int8_files, PARAMS_SUFFIX, *MODEL_SUFFIXES):
        if path.endswith(suffix):
            return path[:-len(suffix)]
    return path


def read_metadata(path_prefix):
    """What :func:`export` recorded beside the model (``{}`` when absent), checked."""
    path = path_prefix + META_SUFFIX
    if not os.path.isfile(path):
        return {}
    shown = printable(path)
    if os.path.getsize(path) > _MAX_META_BYTES:
        raise ModelFileError(f'{shown} is not the metadata export writes (over '
                             f'{_MAX_META_BYTES} bytes)')
    try:
        with open(path, encoding='utf-8') as f:
            meta = json.load(f)
    except (ValueError, RecursionError) as exc:  # JSON and UTF-8 errors are ValueErrors
        raise ModelFileError(f'{shown} is corrupt: not valid JSON ({one_line(exc)})') from None
    if not isinstance(meta, dict):
        raise ModelFileError(f'{shown} is corrupt: expected a JSON object, found '
                             f'{type(meta).__name__}')
    _check_metadata(meta, shown)
    return meta


def _is_count(value, low=0):
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _check_metadata(meta, shown):
    """The fields ``predict`` relies on, when present, have the types export writes."""
    shape = meta.get('input_shape')
    checks = {
        'variant': isinstance(meta.get('variant'), str),
        'num_classes': _is_count(meta.get('num_classes')),
        'in_chans': _is_count(meta.get('in_chans'), 1),
        'input_shape': isinstance(shape, list) and len(shape) == 4
        and all(d is None or _is_count(d, 1) for d in shape),
        'class_names': meta.get('class_names') is None or (
            isinstance(meta['class_names'], list)
            and all(isinstance(n, str) for n in meta['class_names'])
            and len(meta['class_names']) == meta.get('num_classes', len(meta['class_names']))),
    }
    outputs = meta.get('outputs')
    checks.update({
        'task': meta.get('task') in TASKS,
        'outputs': isinstance(outputs, list) and 0 < len(outputs) <= MAX_HEADS
        and all(isinstance(n, str) for n in outputs),
        'heads': meta.get('heads') is None or (
            isinstance(meta['heads'], dict) and all(_is_count(c, 1) for c in meta['heads'].values())),
        'stride': _is_count(meta.get('stride'), 1),
        'top_k': _is_count(meta.get('top_k'), 1),
        'score_threshold': isinstance(meta.get('score_threshold'), (int, float))
        and not isinstance(meta.get('score_threshold'), bool),
        # what ``paddle-dla quantize`` records: a record naming an engine that runs INT8
        'int8': isinstance(meta.get('int8'), dict)
        and isinstance(meta['int8'].get('engine', OPENVINO), str)
        and meta['int8'].get('engine', OPENVINO) in INT8_FILES,
    })
    bad = [key for key, ok in checks.items() if key in meta and not ok]
    for key, read in (('preprocessing', recipe_of), ('input', dense_input_of)):
        try:
            read(meta)
        except (TypeError, ValueError, AttributeError, KeyError):
            bad.append(key)
    if bad:
        raise ModelFileError(f'{shown} is corrupt: unexpected {", ".join(bad)}')


def cpu_supports_bf16():
    try:
        from paddle.base import core
        return bool(core.supports_bfloat16())
    except (ImportError, AttributeError):
        try:
            with open('/proc/cpuinfo', encoding='utf-8') as f:
                flags = f.read()
        except OSError:
            return False
        return 'avx512_bf16' in flags or 'amx_bf16' in flags


def check_device(device, precision):
    """Refuse a device or precision Paddle Inference cannot run, before any file is read."""
    if not isinstance(device, str) or not DEVICE_PATTERN.fullmatch(device):
        raise ValueError(f'device must be "cpu" or "gpu[:N]", got {device!r}')
    if precision not in PRECISIONS:
        raise ValueError(f'precision must be one of {", ".join(PRECISIONS)}, got {precision!r}')
    if device == 'cpu' and precision == 'fp16':
        raise ValueError('fp16 is for GPUs; on CPU use fp32 or bf16')
    if device != 'cpu' and precision == INT8:
        raise ValueError('int8 runs on CPU (OpenVINO or onnxruntime); on a GPU use fp16')
    if device == 'cpu' and precision == 'bf16' and not cpu_supports_bf16():
        raise ValueError('this CPU has no bfloat16 support (AVX512-BF16 or AMX); '
                         'use precision="fp32"')


def locate(path_prefix):
    """(prefix, model file) of an exported model, or a hint on how to create one."""
    prefix = resolve_prefix(path_prefix)
    model_file = model_file_of(prefix)
    if model_file is None or not os.path.isfile(prefix + PARAMS_SUFFIX):
        raise ExportedModelError(
            f'no exported model at {printable(prefix)} (expected .json or .pdmodel, and '
            f'.pdiparams); create one with: paddle-dla export --model dla_34 --out DIR')
    return prefix, model_file

