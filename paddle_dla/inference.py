"""The deployed path: export a model once, then serve it with Paddle Inference.

On CPU the predictor runs oneDNN kernels on all cores (several times faster than eager
mode), and in bfloat16 on CPUs with AVX512-BF16 or AMX. Paddle 3 writes ``.json`` +
``.pdiparams``; Paddle 2.6 writes ``.pdmodel`` + ``.pdiparams``; both are read.
"""
import contextlib
import copy
import errno
import json
import os
import re
import struct
import sys
import tempfile

import numpy as np
import paddle

from . import imagenet
from .atomic import atomic_folder_output
from .engines import DEVICE_PATTERN, PRECISIONS
from .errors import PaddleDLAError, one_line, printable
from .preprocessing import Preprocessing
from .weights import get_weights

MODEL_SUFFIXES = ('.json', '.pdmodel')
PARAMS_SUFFIX = '.pdiparams'
META_SUFFIX = '.dla.json'
_MAX_META_BYTES = 1 << 20  # what export writes is about 20 kB (1000 class names)
# Paddle 3 logs this to stderr on every export of a graph with concat; it concerns Paddle's
# own tracing, not the model, and would break "one line on failure".
_PADDLE_EXPORT_NOISE = 'not support input out tensor'


class ExportedModelError(PaddleDLAError, FileNotFoundError):
    """No exported model where one was expected."""


class ModelFileError(PaddleDLAError, ValueError):
    """A file of an exported model is damaged or incomplete; the message names it."""


class ExportError(PaddleDLAError):
    """An export could not be written completely; nothing was left at the destination."""


def export(model, path_prefix, input_shape=(None, 3, 224, 224), weights=None,
           preprocessing=None, class_names=None):
    """Write ``model`` as a Paddle inference model at ``path_prefix``; returns the files.

    ``input_shape`` may leave any dimension ``None`` (dynamic). A small
    ``<prefix>.dla.json`` records the variant, ``class_names`` (default: ImageNet's for a
    1000-way classifier) and ``preprocessing`` (default: the published weights' recipe at
    the exported size) for ``predict``.
    All files are written into a temporary folder beside the destination and checked
    before any is moved into place: ``paddle.jit.save`` does not report failed writes (a
    full disk leaves truncated files behind without an error).
    """
    from paddle.static import InputSpec

    if len(input_shape) != 4:
        raise ValueError(f'input_shape must be NCHW, got {input_shape}')
    prefix = os.path.abspath(os.fspath(path_prefix))
    folder, name = os.path.split(prefix)
    _check_destination(folder)
    net = copy.deepcopy(model)  # to_static rewrites forward; keep the caller's model eager
    net.eval()
    spec = InputSpec(list(input_shape), 'float32', 'x')
    static = paddle.jit.to_static(net, input_spec=[spec], full_graph=True)
    meta = {'variant': model.config.name, 'num_classes': model.num_classes,
            'in_chans': model.in_chans, 'input_shape': list(input_shape),
            'features_only': model.features_only, 'weights': weights,
            'preprocessing': _export_recipe(model, input_shape, preprocessing).as_dict(),
            'class_names': _export_class_names(model, class_names)}
    expected = sorted(tuple(v.shape) for v in net.state_dict().values())
    try:
        with atomic_folder_output(folder) as tmp:
            _write_export(static, os.path.join(tmp, name), meta, expected, prefix)
    except ModelFileError as exc:
        raise ExportError(f'could not write the exported model {printable(prefix)}: {exc}; '
                          f'paddle.jit.save does not report failed writes: is the disk '
                          f'full?') from None
    except OSError as exc:
        raise ExportError(f'could not write the exported model {printable(prefix)}: '
                          f'{_os_reason(exc)}') from None
    _drop_stale_model_files(prefix)
    given = os.fspath(path_prefix)  # report the files as the caller named them
    return [given + s for s in (*MODEL_SUFFIXES, PARAMS_SUFFIX, META_SUFFIX)
            if os.path.exists(prefix + s)]


def _export_recipe(model, input_shape, preprocessing):
    if preprocessing is not None:
        return preprocessing
    fixed = input_shape[-1] if input_shape[-1] == input_shape[-2] else None
    return get_weights(model.config.name).preprocessing.with_overrides(img_size=fixed)


def _export_class_names(model, class_names):
    if class_names is None:
        return imagenet.class_names() if model.num_classes == imagenet.NUM_CLASSES else None
    names = [str(n) for n in class_names]
    if len(names) != model.num_classes:
        raise ValueError(f'{len(names)} class names for a model with {model.num_classes} '
                         f'classes')
    return names


def recipe_of(meta):
    """The preprocessing an export recorded, or None for exports that recorded none."""
    return Preprocessing.from_dict(meta['preprocessing']) if 'preprocessing' in meta else None


def _check_destination(folder):
    """A file where the output folder (or one above it) should be: say so before any work."""
    path = folder
    while not os.path.lexists(path):
        parent = os.path.dirname(path)
        if parent == path:
            return
        path = parent
    if not os.path.isdir(path):
        raise ExportError(f'cannot export into {printable(folder)}: {printable(path)} is not '
                          f'a folder')


def _write_export(static, tmp_prefix, meta, expected_shapes, shown):
    """Save, check what Paddle wrote (named as the destination ``shown``), add metadata."""
    with _without_paddle_noise():
        paddle.jit.save(static, tmp_prefix)
    model_file = _model_file(tmp_prefix)
    if model_file is None:
        raise ModelFileError(f'paddle.jit.save wrote no model file '
                             f'({" or ".join(MODEL_SUFFIXES)})')
    _check_model_file(model_file, shown + model_file[len(tmp_prefix):])
    found = sorted(tensor_shapes(tmp_prefix + PARAMS_SUFFIX, shown + PARAMS_SUFFIX))
    if found != expected_shapes:
        raise ModelFileError(f'{printable(shown + PARAMS_SUFFIX)} holds {len(found)} tensors '
                             f'where the model has {len(expected_shapes)}')
    with open(tmp_prefix + META_SUFFIX, 'w', encoding='utf-8') as f:
        json.dump(meta, f, indent=2)


def _os_reason(exc):
    """The OS's reason, without the temporary file's name."""
    reason = exc.strerror or one_line(exc)
    if exc.errno in (errno.EFBIG, errno.ENOSPC, errno.EDQUOT):
        reason += ' (is the disk full?)'
    return reason


def _drop_stale_model_files(prefix):
    """A model file of the other format left by an earlier export would pair with the new
    parameters when read by another Paddle version: keep only the one just written."""
    written = _model_file(prefix)
    for suffix in MODEL_SUFFIXES:
        if prefix + suffix != written and os.path.isfile(prefix + suffix):
            os.remove(prefix + suffix)


@contextlib.contextmanager
def _without_paddle_noise():
    """Capture the C++ side's stderr while exporting, and pass on all but the known noise."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no usable stderr: nothing to filter
        yield
        return
    with tempfile.TemporaryFile() as buffer:
        os.dup2(buffer.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            buffer.seek(0)
            for line in buffer.read().decode('utf-8', 'replace').splitlines(True):
                if _PADDLE_EXPORT_NOISE not in line:
                    sys.stderr.write(line)
            sys.stderr.flush()


def _model_file(prefix):
    return next((prefix + s for s in MODEL_SUFFIXES if os.path.isfile(prefix + s)), None)


def _check_model_file(path, shown):
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


# VarType.Type of Paddle's framework.proto -> bytes per element
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
    for suffix in (*MODEL_SUFFIXES, PARAMS_SUFFIX, META_SUFFIX):
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
    bad = [key for key, ok in checks.items() if key in meta and not ok]
    try:
        recipe_of(meta)
    except (TypeError, ValueError, AttributeError):
        bad.append('preprocessing')
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
    if device == 'cpu' and precision == 'bf16' and not cpu_supports_bf16():
        raise ValueError('this CPU has no bfloat16 support (AVX512-BF16 or AMX); '
                         'use precision="fp32"')


def _locate(path_prefix):
    """(prefix, model file) of an exported model, or a hint on how to create one."""
    prefix = resolve_prefix(path_prefix)
    model_file = _model_file(prefix)
    if model_file is None or not os.path.isfile(prefix + PARAMS_SUFFIX):
        raise ExportedModelError(
            f'no exported model at {printable(prefix)} (expected .json or .pdmodel, and '
            f'.pdiparams); create one with: paddle-dla export --model dla_34 --out DIR')
    return prefix, model_file


def _config(model_file, params_file, device, precision, threads, tensorrt):
    from paddle import inference

    config = inference.Config(model_file, params_file)
    if device == 'cpu':
        config.disable_gpu()
        config.enable_mkldnn()
        config.set_cpu_math_library_num_threads(threads or os.cpu_count() or 1)
        if precision == 'bf16':
            config.enable_mkldnn_bfloat16()
    else:
        device_id = int(device.split(':')[1]) if ':' in device else 0
        kind = {'fp32': inference.PrecisionType.Float32,
                'fp16': inference.PrecisionType.Half,
                'bf16': inference.PrecisionType.Bfloat16}[precision]
        config.enable_use_gpu(256, device_id, kind)
        if tensorrt:
            config.enable_tensorrt_engine(workspace_size=1 << 30, max_batch_size=64,
                                          min_subgraph_size=3, precision_mode=kind,
                                          use_static=False, use_calib_mode=False)
    config.switch_ir_optim(True)
    config.disable_glog_info()
    return config


def _create_predictor(config, model_file, params_file):
    """Paddle's loader reports damaged files without naming them: name them."""
    from paddle import inference

    try:
        return inference.create_predictor(config)
    except Exception as exc:  # noqa: BLE001 - Paddle raises several types for one cause
        raise ModelFileError(f'Paddle Inference cannot load {printable(model_file)} with '
                             f'{printable(params_file)}: {_paddle_reason(exc)}') from None


def _paddle_reason(exc):
    """The first line of a Paddle C++ error, without its source location."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else type(exc).__name__
    return one_line(re.sub(r'\s*\(at /\S+\)\s*$', '', first))


class Predictor:
    """Run an exported model: ``Predictor(prefix)(batch)`` -> logits, both numpy.

    Args:
        path_prefix: what :func:`export` was given (or its folder, or one of its files).
        device: ``'cpu'`` or ``'gpu'`` / ``'gpu:1'``.
        precision: ``'fp32'``; ``'bf16'`` on CPUs that support it; ``'fp16'`` on GPU.
        threads: CPU threads (default: all cores).
        tensorrt: on GPU, run through TensorRT subgraphs.
    """

    def __init__(self, path_prefix, device='cpu', precision='fp32', threads=None,
                 tensorrt=False):
        check_device(device, precision)
        prefix, model_file = _locate(path_prefix)
        self.meta = read_metadata(prefix)
        tensor_shapes(prefix + PARAMS_SUFFIX)  # names the file if truncated or not params
        self.prefix, self.device, self.precision = prefix, device, precision
        config = _config(model_file, prefix + PARAMS_SUFFIX, device, precision, threads,
                         tensorrt)
        self._predictor = _create_predictor(config, model_file, prefix + PARAMS_SUFFIX)
        self._input = self._predictor.get_input_handle(self._predictor.get_input_names()[0])
        self._output = self._predictor.get_output_handle(self._predictor.get_output_names()[0])

    def _check(self, batch):
        if not isinstance(batch, np.ndarray):
            raise TypeError(f'expected a numpy array, got {type(batch).__name__}')
        if batch.dtype != np.float32:
            raise TypeError(f'expected float32 input, got {batch.dtype}; use '
                            f'batch.astype("float32")')
        shape = self.meta.get('input_shape') or [None, None, None, None]
        if batch.ndim != 4 or any(want is not None and want != got
                                  for want, got in zip(shape[1:], batch.shape[1:])):
            expected = ', '.join('N' if d is None else str(d) for d in
                                 [None] + list(shape[1:]))
            raise ValueError(f'expected input of shape [{expected}] (NCHW), got '
                             f'{list(batch.shape)}')

    def __call__(self, batch):
        self._check(batch)
        self._input.reshape(list(batch.shape))
        self._input.copy_from_cpu(np.ascontiguousarray(batch))
        try:
            self._predictor.run()
        except Exception as exc:  # Paddle reports kernel failures as bare std::exception
            hint = ('; oneDNN bfloat16 kernels fail on some graphs (dla_60_res2next at batch > 1 '
                    'with Paddle 3.3), use precision="fp32"' if self.precision == 'bf16' else '')
            raise RuntimeError(f'Paddle Inference failed on {self.prefix} ({self.precision}, '
                               f'input {list(batch.shape)}): {exc}{hint}') from exc
        return self._output.copy_to_cpu()
