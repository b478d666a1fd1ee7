"""The engines that run an exported model, behind one call: ``engine(batch) -> logits``.

Paddle Inference (oneDNN on CPU) is always there. OpenVINO and onnxruntime run the same
files when installed: they read the ONNX translation paddle2onnx writes once per model
(cached by content); OpenVINO also reads Paddle 2.6's ``.pdmodel`` directly. All three
run the same oneDNN-class kernels on CPU, yet which is fastest differs by machine, model
and batch, so :func:`choose_engine` measures them on first use and remembers the winner.
"""
import hashlib
import importlib
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time

import numpy as np

from ..core import __version__
from ..core.atomic import atomic_output
from ..core.digests import CHUNK
from ..core.errors import PaddleDLAError, one_line, printable
from ..core.machine import installed_versions, machine_id, usable_cpus
from ..core.parity import FLOAT32_LIMIT, TOP2_GAP, relative_error, top1_agreement
from ..weights.cache import cache_lock, compiled_home
from .engines import (CPU_PRECISIONS, ENGINE_EXTRAS, ENGINES, INT8, ONNXRUNTIME, OPENVINO,
                      OPTIONAL_ENGINES, PADDLE)
from .exported import INT8_FILES, PARAMS_SUFFIX, ModelFileError
from .openvino_reader import openvino_core

ONNX_OPSET = 17
_CHOICES_FILE = 'engine-choice.json'
_MAX_CHOICES = 512  # entries remembered; the oldest go first
_MEASURED_RUNS = 3
_CHOICES_LOCK_S = 30  # the lock is held for one read and one write


class EngineUnavailable(PaddleDLAError, RuntimeError):
    """An engine that is not installed, or cannot run this model, device or precision."""


def cpu_threads(threads):
    """The threads an engine runs: as asked, else the CPUs this process may run on (a
    ``taskset`` or cpuset narrows them)."""
    return threads or usable_cpus()


# --- Paddle Inference ---------------------------------------------------------------------

def _paddle_config(model_file, params_file, device, precision, threads, tensorrt):
    from paddle import inference

    config = inference.Config(model_file, params_file)
    if device == 'cpu':
        config.disable_gpu()
        config.enable_mkldnn()
        config.set_cpu_math_library_num_threads(cpu_threads(threads))
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


def _paddle_reason(exc):
    """The first line of a Paddle C++ error, without its source location."""
    lines = str(exc).strip().splitlines()
    first = lines[0] if lines else type(exc).__name__
    return one_line(re.sub(r'\s*\(at /\S+\)\s*$', '', first))


# glibc's malloc serves blocks over its threshold with mmap, and returns them on free:
# Paddle Inference frees its activations after every run, so every run page-faults tens of
# megabytes back in (about 7% of dla_34's time on 2 cores). Above these thresholds it
# keeps them; OpenVINO and onnxruntime keep their buffers themselves.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_KEPT_BLOCK_BYTES = 32 << 20   # glibc's largest mmap threshold
_KEPT_FREE_BYTES = 1 << 30


def keep_freed_activations():
    """Raise glibc's thresholds once (process-wide); a no-op without glibc."""
    global _kept
    if _kept:
        return
    _kept = True
    try:
        import ctypes
        libc = ctypes.CDLL('libc.so.6')
        libc.mallopt(_M_MMAP_THRESHOLD, _KEPT_BLOCK_BYTES)
        libc.mallopt(_M_TRIM_THRESHOLD, _KEPT_FREE_BYTES)
    except (OSError, AttributeError):
        pass


_kept = False


class PaddleEngine:
    name = PADDLE

    def __init__(self, prefix, model_file, device, precision, threads, tensorrt=False):
        from paddle import inference

        if device == 'cpu':
            keep_freed_activations()
        params_file = prefix + PARAMS_SUFFIX
        config = _paddle_config(model_file, params_file, device, precision, threads, tensorrt)
        try:
            self._predictor = inference.create_predictor(config)
        except Exception as exc:  # noqa: BLE001 - Paddle raises several types for one cause
            raise ModelFileError(f'Paddle Inference cannot load {printable(model_file)} with '
                                 f'{printable(params_file)}: {_paddle_reason(exc)}') from None
        self._input = self._predictor.get_input_handle(self._predictor.get_input_names()[0])
        self._outputs = [self._predictor.get_output_handle(name)
                         for name in self._predictor.get_output_names()]

    def __call__(self, batch):
        return self.all_outputs(batch)[0]

    def all_outputs(self, batch):
        """Every output of the program, in its order (a dense model has several)."""
        self._input.reshape(list(batch.shape))
        self._input.copy_from_cpu(batch)
        self._predictor.run()
        return [output.copy_to_cpu() for output in self._outputs]


# --- the ONNX route -----------------------------------------------------------------------

def _content_digest(*paths):
    sha = hashlib.sha256()
    for path in paths:
        with open(path, 'rb') as f:
            for block in iter(lambda: f.read(CHUNK), b''):
                sha.update(block)
        sha.update(b'\0')
    return sha.hexdigest()


def onnx_model(prefix, model_file):
    """The ONNX translation of an exported model, written once by paddle2onnx and cached
    under :func:`compiled_home` by the content of both files (no stale translation after a
    re-export)."""
    params_file = prefix + PARAMS_SUFFIX
    path = os.path.join(compiled_home(), 'onnx',
                        _content_digest(model_file, params_file)[:32] + '.onnx')
    if os.path.isfile(path):
        return path
    if not importable('paddle2onnx'):
        raise EngineUnavailable('the ONNX route needs paddle2onnx: pip install '
                                'paddle2onnx')
    with atomic_output(path) as tmp:
        _translate(model_file, params_file, tmp)
    return path


# paddle2onnx runs in a child: some releases abort the whole process on an operator they
# cannot translate (1.3 on the deformable convolution), which must cost one engine, not the
# run. Its progress lines go to the child's output, kept for the reason.
_TRANSLATE = """import sys
import paddle2onnx
data = paddle2onnx.export(sys.argv[1], sys.argv[2], save_file=None,
                          opset_version=int(sys.argv[3]), enable_onnx_checker=True)
if not data:
    sys.exit('error: paddle2onnx wrote nothing')
with open(sys.argv[4], 'wb') as f:
    f.write(data)
"""


# What a child's output says besides its reason: Python's warnings (the source line it
# prints under each one included) and Paddle's notes at import.
_NOISE = re.compile(r'Warning\b|^warnings\.warn\(|^[IW]\d{4} ')
_ERROR = re.compile(r'error|abort|fail|not supported|cannot', re.IGNORECASE)


def last_words(output):
    """The line of a failed child's ``output`` (its stdout, then its stderr) that says why:
    after a Python traceback, its last line (the exception); else the last that reads as an
    error, else the last that is not a warning."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    lines = [line for line in lines if not _NOISE.search(line)] or lines
    if any(line.startswith('Traceback (most recent call last)') for line in lines):
        return lines[-1]
    errors = [line for line in lines if _ERROR.search(line)]
    return (errors or lines or ['no output'])[-1]


def _translate(model_file, params_file, out):
    """Write the ONNX translation of an exported model to ``out``, or raise
    :class:`EngineUnavailable` with paddle2onnx's last words."""
    proc = subprocess.run([sys.executable, '-c', _TRANSLATE, model_file, params_file,
                           str(ONNX_OPSET), out], capture_output=True, text=True,
                          errors='replace', stdin=subprocess.DEVNULL)
    if proc.returncode == 0 and os.path.getsize(out) > 0:
        return
    reason = last_words(proc.stdout + '\n' + proc.stderr)
    if proc.returncode < 0:
        reason = f'it was killed by signal {-proc.returncode} ({reason})'
    raise EngineUnavailable(f'paddle2onnx could not translate {printable(model_file)}: '
                            f'{printable(reason)}')


def _cpu_engine_library(name, label, module, device, precision):
    """The library of an engine offered on CPU only, for the precisions it supports."""
    if device != 'cpu' or precision not in CPU_PRECISIONS[name]:
        *others, last = CPU_PRECISIONS[name]
        offered = f'{", ".join(others)} and {last}' if others else last
        raise EngineUnavailable(f'{label} is offered for {offered} on CPU')
    try:
        return importlib.import_module(module)
    except ImportError:
        raise EngineUnavailable(f'{label} is not installed: {ENGINE_EXTRAS[name]}') from None


_FETCH_NAME = re.compile(r'fetch_name_(\d+)$')


def fetch_order(names):
    """Output names in the order of the exported program's fetch list: paddle2onnx names
    the i-th output ``fetch_name_i``, and an engine or a quantizer may list them otherwise,
    so outputs are matched to the model's by name, never by position alone."""
    numbers = [_FETCH_NAME.match(name) for name in names]
    if not all(numbers) or len({int(m.group(1)) for m in numbers}) != len(names):
        return list(names)
    return sorted(names, key=lambda name: int(_FETCH_NAME.match(name).group(1)))


def _int8_source(prefix, engine):
    """The INT8 model file an export carries for ``engine``."""
    source = prefix + INT8_FILES[engine][0]
    if not os.path.isfile(source):
        raise EngineUnavailable(f'{printable(prefix)} carries no INT8 model for {engine}; '
                                f'make one with: paddle-dla quantize')
    return source


class OnnxRuntimeEngine:
    name = ONNXRUNTIME

    def __init__(self, prefix, model_file, device, precision, threads):
        ort = _cpu_engine_library(self.name, 'onnxruntime', 'onnxruntime', device, precision)
        options = ort.SessionOptions()
        options.intra_op_num_threads = cpu_threads(threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3
        source = (_int8_source(prefix, self.name) if precision == INT8 else
                  onnx_model(prefix, model_file))
        self._session = ort.InferenceSession(source, options,
                                             providers=['CPUExecutionProvider'])
        self._input = self._session.get_inputs()[0].name
        self._outputs = fetch_order([o.name for o in self._session.get_outputs()])

    def __call__(self, batch):
        return self.all_outputs(batch)[0]

    def all_outputs(self, batch):
        return self._session.run(self._outputs, {self._input: batch})


class OpenVINOEngine:
    name = OPENVINO

    def __init__(self, prefix, model_file, device, precision, threads):
        _cpu_engine_library(self.name, 'OpenVINO', 'openvino', device, precision)
        if precision == INT8:
            source = _int8_source(prefix, self.name)
        # OpenVINO reads Paddle 2.6's program files itself, but not Paddle 3's .json.
        elif model_file.endswith('.pdmodel'):
            source = model_file
        else:
            source = onnx_model(prefix, model_file)
        core = openvino_core()  # it reads ONNX DeformConv (a .pdmodel's, OpenVINO's reader)
        # bf16 is OpenVINO's default on capable CPUs: fp32 must be asked for (in an INT8
        # model, for the layers NNCF left unquantized).
        self._compiled = core.compile_model(core.read_model(source), 'CPU', {
            'PERFORMANCE_HINT': 'LATENCY', 'NUM_STREAMS': '1',
            'INFERENCE_NUM_THREADS': str(cpu_threads(threads)),
            'INFERENCE_PRECISION_HINT': 'bf16' if precision == 'bf16' else 'f32'})
        self._request = self._compiled.create_infer_request()
        # An output may carry several names: the fetch name, where one is among them.
        names = [min(o.get_names(), key=lambda n: (not _FETCH_NAME.match(n), n), default='')
                 for o in self._compiled.outputs]
        ordered = fetch_order(names)  # reordered only where the names are distinct
        self._order = [names.index(name) for name in ordered] if ordered != names else list(
            range(len(names)))

    def __call__(self, batch):
        return self.all_outputs(batch)[0]

    def all_outputs(self, batch):
        self._request.infer({0: batch})
        return [self._request.get_output_tensor(i).data.copy() for i in self._order]


_ENGINE_CLASSES = {cls.name: cls for cls in (PaddleEngine, OpenVINOEngine, OnnxRuntimeEngine)}


def open_engine(name, prefix, model_file, device='cpu', precision='fp32', threads=None,
                tensorrt=False):
    if name not in _ENGINE_CLASSES:
        raise ValueError(f'engine must be one of auto, {", ".join(ENGINES)}; got {name!r}')
    if name == PADDLE and precision == INT8:
        raise EngineUnavailable('Paddle Inference runs fp32 and bf16; INT8 runs on OpenVINO '
                                'or onnxruntime')
    if name == PADDLE:
        return PaddleEngine(prefix, model_file, device, precision, threads, tensorrt)
    if tensorrt:
        raise EngineUnavailable('TensorRT runs through engine="paddle" on a GPU')
    try:
        return _ENGINE_CLASSES[name](prefix, model_file, device, precision, threads)
    except (EngineUnavailable, ModelFileError):
        raise
    except Exception as exc:  # noqa: BLE001 - a library that fails on this model
        read = prefix + INT8_FILES[name][0] if precision == INT8 else model_file
        raise EngineUnavailable(f'{name} cannot run {printable(read)}: '
                                f'{one_line(exc)}') from None


# --- choosing by measurement ---------------------------------------------------------------

# What decides an engine's speed besides the machine and the model: its library's version
# (under whichever distribution supplies it), and ours, which sets the engines' options
# (``__version__`` itself: an editable install's metadata keeps the version it was installed
# with).
ENGINE_PACKAGES = ('paddlepaddle', 'paddlepaddle-gpu', 'openvino',
                   'openvino-nightly', 'onnxruntime', 'onnxruntime-gpu', 'paddle2onnx')


def choice_key(model_file, meta, device, precision, threads):
    """What a remembered choice holds for: this machine, threads, device and precision, the
    model's graph and shape, and the engines' versions (an upgrade measures again)."""
    with open(model_file, 'rb') as f:
        graph = hashlib.sha256(f.read()).hexdigest()[:16]
    shape = 'x'.join('N' if d is None else str(d) for d in meta.get('input_shape') or [])
    versions = ' '.join(f'{k} {v}' for k, v in installed_versions(ENGINE_PACKAGES).items())
    versions = f'paddle_dla {__version__} {versions}'
    return (f'{machine_id()} | {cpu_threads(threads)} threads | {device} {precision} | '
            f'{meta.get("variant", "model")} {shape} {graph} | {versions}')


def batch_class(size):
    """The class of batch sizes a remembered choice holds for: engines rank differently on
    one image than on many (one image spreads its threads within layers, a batch may
    not)."""
    return '1' if size <= 1 else '2-7' if size < 8 else '8+'


def input_class(shape, declared=None):
    """The class of inputs of ``shape`` (NCHW) a remembered choice holds for: the
    :func:`batch_class`, and, for an export whose height and width are free
    (``declared``, its input shape, has None there), the image area to the nearest power of
    two: engines that tie at 64 px may not at 1024 px."""
    size = batch_class(shape[0])
    if declared and len(declared) == 4 and None not in declared[2:]:
        return size
    area = 2 ** round(math.log2(max(1, shape[2] * shape[3])))
    return f'{size}, {area // 1024} kpx' if area >= 1024 else f'{size}, {area} px'


def class_key(base, size_class):
    """A remembered choice's key: :func:`choice_key`'s, for one :func:`batch_class`."""
    return f'{base} | batch {size_class}'


def _choices_path():
    return os.path.join(compiled_home(), _CHOICES_FILE)


def read_choices():
    """The remembered choices; an unreadable file counts as none (it is only a cache)."""
    try:
        with open(_choices_path(), encoding='utf-8') as f:
            choices = json.load(f)
    except (OSError, ValueError, RecursionError):  # JSON and UTF-8 errors are ValueErrors
        return {}
    return choices if isinstance(choices, dict) else {}


def _update_choices(change):
    """Read the remembered choices, ``change`` them in place and write them back when it
    returns true, all under the file's lock: processes choosing at once (the ranks of
    ``eval --nproc``) would otherwise lose each other's records, or bring back one that
    another had just forgotten."""
    from filelock import Timeout

    try:
        with cache_lock('engine-choice', timeout=_CHOICES_LOCK_S):
            choices = read_choices()
            if change(choices):
                with atomic_output(_choices_path()) as tmp:
                    with open(tmp, 'w', encoding='utf-8') as f:
                        json.dump(choices, f, indent=1)
    except (OSError, Timeout):  # a read-only cache, or a stuck writer: choose again next time
        pass


def remember_choice(key, record):
    def change(choices):
        choices.pop(key, None)
        choices[key] = record
        while len(choices) > _MAX_CHOICES:
            choices.pop(next(iter(choices)))
        return True
    _update_choices(change)


def forget_engine(base_key, engine):
    """Drop every remembered choice of ``engine`` under ``base_key`` (:func:`choice_key`),
    whatever its input class: an engine that failed at run time is measured again next
    time, not reopened."""
    prefix = class_key(base_key, '')

    def change(choices):
        gone = [key for key, record in choices.items() if key.startswith(prefix)
                and isinstance(record, dict) and record.get('engine') == engine]
        for key in gone:
            del choices[key]
        return bool(gone)
    _update_choices(change)


def _outputs(engine, batch):
    return list(engine.all_outputs(batch))


def disagreement(outputs, reference, limit):
    """Why ``outputs`` fail the parity standard against ``reference`` (lists of arrays in
    the program's order), or None."""
    if len(outputs) != len(reference):
        return f'{len(outputs)} outputs where Paddle Inference gives {len(reference)}'
    for i, (ours, theirs) in enumerate(zip(outputs, reference)):
        if np.shape(ours) != np.shape(theirs):
            return f'output {i} has shape {list(np.shape(ours))}, not {list(np.shape(theirs))}'
        error = relative_error(ours, theirs)
        if not error <= limit:  # NaN fails too
            return f'output {i} differs from Paddle Inference\'s by {error:.1e} (limit {limit:g})'
        if np.ndim(theirs) == 2:  # logits: rows clearer than the error allows must agree
            # float32: the standard's own gap; bfloat16 may move logits by more than that
            scale = max(1.0, float(np.max(np.abs(theirs))))
            gap = TOP2_GAP if limit <= FLOAT32_LIMIT else max(TOP2_GAP, limit * scale)
            agreeing, decided = top1_agreement(ours, theirs, gap)
            if agreeing != decided:
                return (f'output {i}: top-1 differs from Paddle Inference\'s on '
                        f'{decided - agreeing} of {decided} rows')
    return None


def measure_engines(engines, batch, runs=_MEASURED_RUNS, limit=FLOAT32_LIMIT):
    """Images per second of each engine on ``batch``: one warm-up each, then ``runs``
    rounds taking each engine in turn (interleaved, so that a busy moment of the machine
    does not favour one), the median kept. Engines that fail are left out, and so are those
    whose outputs on the batch miss the parity standard (``limit``) against Paddle
    Inference's, when it is among them: a fast engine that computes something else is not a
    candidate. Where Paddle cannot run the whole batch, the first image is compared; where
    it runs not even that, no other engine can be checked, so none is a candidate."""
    times, failed, outputs = {name: [] for name in engines}, {}, {}
    for name, engine in engines.items():
        try:
            outputs[name] = _outputs(engine, batch)
        except Exception as exc:  # noqa: BLE001 - an engine that cannot run is not chosen
            failed[name] = one_line(exc)
    reference, rows = _reference(engines, batch, outputs)
    for name in list(outputs):
        if name == PADDLE or PADDLE not in engines:
            continue
        failed_why = ('not compared: Paddle Inference could not run the batch'
                      if reference is None else
                      disagreement([out[:rows] for out in outputs[name]], reference, limit))
        if failed_why:
            failed[name] = failed_why
    for _ in range(runs):
        for name, engine in engines.items():
            if name not in failed:
                start = time.perf_counter()
                try:
                    engine(batch)
                except Exception as exc:  # noqa: BLE001 - fails after its first run
                    failed[name], times[name] = one_line(exc), []
                    continue
                times[name].append(time.perf_counter() - start)
    rates = {name: round(len(batch) / statistics.median(t), 2)
             for name, t in times.items() if t}
    return rates, failed


def _reference(engines, batch, outputs):
    """``(outputs, rows)``: Paddle Inference's outputs on ``batch``, or on its first image
    when the whole batch fails on it, and how many images they cover; ``(None, 0)`` when
    it runs neither (or is not measured)."""
    if PADDLE in outputs:
        return outputs[PADDLE], len(batch)
    if PADDLE in engines and len(batch) > 1:
        try:
            return _outputs(engines[PADDLE], batch[:1]), 1
        except Exception:  # noqa: BLE001 - nothing to compare the others with
            pass
    return None, 0


def installed_engines(device, precision):
    """The engines worth measuring here: Paddle, and the optional ones that are installed
    and run this device and precision."""
    paddle = [PADDLE] if device != 'cpu' or precision in CPU_PRECISIONS[PADDLE] else []
    return paddle + [name for name in OPTIONAL_ENGINES if device == 'cpu'
                     and precision in CPU_PRECISIONS[name] and importable(name)]


def importable(module):
    """Whether ``module`` is installed, without importing it."""
    import importlib.util
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: blocked in sys.modules
        return False


def choose_engine(engines, batch, limit=FLOAT32_LIMIT):
    """The fastest of ``engines`` (name -> engine) that agree with Paddle Inference on
    ``batch``, with what was measured: ``(name, rates, failed)``."""
    rates, failed = measure_engines(engines, batch, limit=limit)
    if not rates:
        raise EngineUnavailable('no engine could run the model and agree with Paddle '
                                'Inference: ' + '; '.join(
            f'{k}: {v}' for k, v in failed.items()))
    return max(rates, key=rates.get), rates, failed
