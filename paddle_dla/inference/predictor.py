"""The deployed path: export a model once, then serve it with the fastest engine here.

On CPU the engines run oneDNN-class kernels on all cores (several times faster than eager
mode), and in bfloat16 on CPUs with AVX512-BF16 or AMX. Paddle 3 writes ``.json`` +
``.pdiparams``; Paddle 2.6 writes ``.pdmodel`` + ``.pdiparams``; both are read.
"""
import contextlib
import copy
import datetime
import errno
import functools
import hashlib
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np
import paddle

from ..core.atomic import atomic_folder_output
from ..core.errors import PaddleDLAError, is_disk_full, one_line, printable
from ..core.parity import BFLOAT16_LIMIT, FLOAT32_LIMIT
from ..models import imagenet
from ..tasks.serving import DenseSpec
from ..weights.cache import cache_lock, compiled_home, compiled_lock_name, folder_lock
from ..weights.registry import get_weights
from .engines import AUTO, CPU_PRECISIONS, ENGINE_CHOICES, ENGINES, INT8, PADDLE
from .exported import (META_SUFFIX, MODEL_SUFFIXES, PARAMS_SUFFIX, ExportedModelError,
                       ModelFileError, check_device, check_int8_files, check_model_file,
                       cpu_supports_bf16, int8_engine, int8_model_file, locate, model_file_of,
                       read_metadata, recipe_of, resolve_prefix, tensor_shapes)
from .quantize import calibration_digest, quantize_export, scheme_tag
from .runtimes import (EngineUnavailable, choice_key, choose_engine, class_key, forget_engine,
                       importable, input_class, installed_engines, open_engine, read_choices,
                       remember_choice)

__all__ = ['export', 'Predictor', 'compile_model', 'weights_digest', 'ExportError',
           'ExportedModelError', 'ModelFileError', 'EngineUnavailable', 'tensor_shapes',
           'read_metadata', 'recipe_of', 'resolve_prefix', 'check_device', 'cpu_supports_bf16',
           'META_SUFFIX', 'MODEL_SUFFIXES', 'PARAMS_SUFFIX', 'describe_engine']

# 'auto' measures each engine on the first images of the first batch: enough to rank them,
# few enough that the first call of an evaluation does not take minutes.
AUTO_MEASURED_BATCH = 8
# After 'auto' measures, the chosen engine's next calls are timed: a measurement on a noisy
# batch (another process woke up) can crown an engine that, running steadily, loses to
# the runner-up's measured speed by more than the noise; it is measured once more then.
STEADY_CALLS, STEADY_NOISE = 8, 0.10

# Paddle 3 logs this to stderr on every export of a graph with concat; it concerns Paddle's
# own tracing, not the model, and would break "one line on failure".
_PADDLE_EXPORT_NOISE = 'not support input out tensor'


class ExportError(PaddleDLAError):
    """An export could not be written completely; nothing was left at the destination."""


def export(model, path_prefix, input_shape=None, weights=None, preprocessing=None,
           class_names=None):
    """Write ``model`` as a Paddle inference model at ``path_prefix``; returns the files.

    ``input_shape`` may leave any dimension ``None`` (dynamic); by default a classifier
    takes ``[N, 3, 224, 224]`` and a dense model its recipe's size (512x512 for CenterNet).
    A small ``<prefix>.dla.json`` records the variant, ``class_names`` (default: ImageNet's
    for a 1000-way classifier, the dataset's for a dense model) and the preprocessing
    (default: the published weights' recipe at the exported size; a dense model's input
    recipe, or the :class:`~paddle_dla.models.dense_variants.DenseInput` given as ``preprocessing``)
    for ``predict``; a dense model's named outputs are recorded in order.
    All files are written into a temporary folder beside the destination and checked
    before any is moved into place: ``paddle.jit.save`` does not report failed writes (a
    full disk leaves truncated files behind without an error).
    """
    from paddle.static import InputSpec

    dense = is_dense_model(model)
    if input_shape is None:
        recipe = model.config.input if dense else None
        input_shape = ((None, 3, None, None) if dense and recipe.native else
                       (None, 3, recipe.height, recipe.width) if dense else
                       (None, model.in_chans, 224, 224))
    if len(input_shape) != 4:
        raise ValueError(f'input_shape must be NCHW, got {input_shape}')
    prefix = os.path.abspath(os.fspath(path_prefix))
    folder, name = os.path.split(prefix)
    _check_destination(folder)
    net = copy.deepcopy(model)  # to_static rewrites forward; keep the caller's model eager
    net.eval()
    if dense:
        net = _NamedOutputs(net)
    spec = InputSpec(list(input_shape), 'float32', 'x')
    static = paddle.jit.to_static(net, input_spec=[spec], full_graph=True)
    meta = (_dense_meta(model, input_shape, class_names, preprocessing) if dense else
            {'variant': model.config.name, 'num_classes': model.num_classes,
             'in_chans': model.in_chans, 'input_shape': list(input_shape),
             'features_only': model.features_only,
             'preprocessing': _export_recipe(model, input_shape, preprocessing).as_dict(),
             'class_names': _export_class_names(model, class_names)})
    meta['weights'] = weights
    expected = sorted(tuple(v.shape) for v in net.state_dict().values())
    try:
        with atomic_folder_output(folder, last=META_SUFFIX, lock=folder_lock(folder)) as tmp:
            _write_export(static, os.path.join(tmp, name), meta, expected, prefix)
    except ModelFileError as exc:
        raise ExportError(f'could not write the exported model {printable(prefix)}: {exc}; '
                          f'paddle.jit.save does not report failed writes: is the disk '
                          f'full?') from None
    except OSError as exc:
        raise ExportError(_write_failure(exc, prefix)) from exc
    _drop_stale_model_files(prefix)
    given = os.fspath(path_prefix)  # report the files as the caller named them
    return [given + s for s in (*MODEL_SUFFIXES, PARAMS_SUFFIX, META_SUFFIX)
            if os.path.exists(prefix + s)]


def is_dense_model(model):
    """A segmentation or CenterNet-style model: several named outputs, a dense recipe."""
    return hasattr(model, 'output_names')


class _NamedOutputs(paddle.nn.Layer):
    """The model's outputs as a tuple in ``output_names`` order: what the inference
    program returns, named by the export's metadata."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x):
        out = self.model(x)
        if isinstance(out, dict):
            return tuple(out[name] for name in self.model.output_names)
        return tuple(out) if isinstance(out, (tuple, list)) else (out,)


def _dense_meta(model, input_shape, class_names, recipe):
    """What ``predict`` needs to serve a dense model: its outputs, classes and recipe."""
    spec = DenseSpec.of_model(model, input_shape[2], input_shape[3], recipe, class_names)
    return {'variant': model.config.name, 'heads': dict(getattr(model, 'heads', {})) or None,
            'num_classes': model.num_classes, 'in_chans': input_shape[1],
            'input_shape': list(input_shape), **spec.as_meta()}


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
    model_file = model_file_of(tmp_prefix)
    if model_file is None:
        raise ModelFileError(f'paddle.jit.save wrote no model file '
                             f'({" or ".join(MODEL_SUFFIXES)})')
    check_model_file(model_file, shown + model_file[len(tmp_prefix):])
    found = sorted(tensor_shapes(tmp_prefix + PARAMS_SUFFIX, shown + PARAMS_SUFFIX))
    if found != expected_shapes:
        raise ModelFileError(f'{printable(shown + PARAMS_SUFFIX)} holds {len(found)} tensors '
                             f'where the model has {len(expected_shapes)}')
    with open(tmp_prefix + META_SUFFIX, 'w', encoding='utf-8') as f:
        json.dump(meta, f, indent=2)


def _write_failure(exc, prefix):
    """What stopped the export: a full disk as the OS says it with the file being written
    (``atomic_folder_output`` names it), else the OS's reason without the temporary name."""
    if is_disk_full(exc):
        hint = '' if exc.errno == errno.ENOSPC else ' (is the disk full?)'
        return one_line(exc) + hint
    return (f'could not write the exported model {printable(prefix)}: '
            f'{exc.strerror or one_line(exc)}')


def _drop_stale_model_files(prefix):
    """A model file of the other format left by an earlier export would pair with the new
    parameters when read by another Paddle version: keep only the one just written."""
    written = model_file_of(prefix)
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


def check_engine(engine, device, precision):
    """Refuse an engine, device or precision that cannot run, before any file is read."""
    check_device(device, precision)
    if engine not in ENGINE_CHOICES:
        raise ValueError(f'engine must be one of {", ".join(ENGINE_CHOICES)}, got {engine!r}')


class Predictor:
    """Run an exported model: ``Predictor(prefix)(batch)`` -> logits, both numpy; for a
    dense model ``{output name: map}`` (``hm``, ``wh``, ``reg`` .. or ``logprobs``).

    Args:
        path_prefix: what :func:`export` was given (or its folder, or one of its files).
        device: ``'cpu'`` or ``'gpu'`` / ``'gpu:1'``.
        precision: ``'fp32'``; ``'bf16'`` on CPUs that support it; ``'fp16'`` on GPU;
            ``'int8'`` for an export made by ``paddle-dla quantize`` (on CPU, by OpenVINO;
            onnxruntime runs a dense network's INT8 model made by an earlier release).
            Default: ``'int8'`` for such an export where its engine is installed,
            ``'fp32'`` otherwise.
        threads: CPU threads (default: all cores).
        tensorrt: on GPU, run through TensorRT subgraphs.
        engine: ``'paddle'`` (Paddle Inference), ``'openvino'`` or ``'onnxruntime'`` (when
            installed), or ``'auto'``: on CPU, the installed engines are measured on the
            first batch and the fastest is kept, a choice remembered per machine, model and
            precision (:attr:`choice` says what was measured; :attr:`how_chosen` and
            :func:`describe_engine` say it in words).
    """

    def __init__(self, path_prefix, device='cpu', precision=None, threads=None,
                 tensorrt=False, engine=AUTO):
        check_engine(engine, device, precision or 'fp32')
        prefix, model_file = locate(path_prefix)
        self.meta = read_metadata(prefix)
        tensor_shapes(prefix + PARAMS_SUFFIX)  # names the file if truncated or not params
        if precision in (None, INT8):  # where a missing INT8 model would pass unnoticed
            check_int8_files(prefix, self.meta)
        precision = _precision_for(prefix, self.meta, device, precision, engine)
        self.prefix, self.device, self.precision = prefix, device, precision
        # A dense model's outputs by name; a classifier returns its logits alone.
        self.output_names = list(self.meta.get('outputs') or [])
        self._open = functools.partial(open_engine, prefix=prefix, model_file=model_file,
                                       device=device, precision=precision, threads=threads,
                                       tensorrt=tensorrt)
        self.requested, self._tensorrt = engine, tensorrt
        # 'auto' on CPU: the choice's key without the batch class, the class the running
        # engine was chosen for, and the engines chosen so far by name.
        self.choice, self._base_key, self._class, self._chosen = None, None, None, {}
        self._steady = None  # the chosen engine's rates since it was measured, or None
        self._failed = set()  # engines that failed at run time: never chosen again here
        self._measured_here, self._unopened = False, None
        if precision == INT8:
            self._engine = self._open(int8_engine(self.meta))
        elif engine == AUTO and device == 'cpu' and not tensorrt:
            self._engine = self._remembered_engine(model_file, threads)
        else:
            self._engine = self._open(PADDLE if engine == AUTO else engine)

    @property
    def engine(self):
        """The name of the engine that runs the model."""
        return self._engine.name

    @property
    def how_chosen(self):
        """How :attr:`engine` came to run the model, e.g. ``'requested'`` or ``'auto:
        remembered for this machine'``: a user comparing runs needs to know whether a
        measurement or an old record picked it."""
        if self.requested != AUTO:
            return 'requested'
        if self._base_key is not None and self.choice is None:
            return 'auto: Paddle Inference until the first batch is measured'
        if self.choice is None and self.precision == INT8:
            return f'auto: this INT8 model runs on {self.engine}, nothing measured'
        if self.choice is None:
            return ('auto: TensorRT runs through Paddle Inference, nothing measured'
                    if self._tensorrt else
                    f'auto: only Paddle Inference runs on {self.device}, nothing measured')
        if self.choice.get('failed_at_run_time'):
            return (f'auto: {self.choice["failed_at_run_time"]} failed at run time, Paddle '
                    f'Inference took over')
        if self._measured_here:
            return 'auto: measured now' + _measurement_note(self.choice, self._unopened)
        return 'auto: remembered for this machine'

    def _remembered_engine(self, model_file, threads):
        """The engine chosen most recently for this machine, model and precision (for any
        batch class: the first batch settles its own); else Paddle, until the first batch
        is measured on every installed engine."""
        self._base_key = choice_key(model_file, self.meta, self.device, self.precision,
                                    threads)
        prefix = class_key(self._base_key, '')
        for key, record in reversed(list(read_choices().items())):
            if key.startswith(prefix):
                engine = self._remembered(record)
                if engine is not None:
                    self._class = key[len(prefix):]
                    return engine
                break
        self._chosen[PADDLE] = self._open(PADDLE)
        return self._chosen[PADDLE]

    def _remembered(self, record):
        """The engine a remembered record names, opened (and kept as :attr:`choice`), or
        None when it is no longer installed or no longer opens, or the record is not one
        (measured again then). A choice not yet confirmed by steady calls is timed here."""
        name = _recorded_engine(record)
        if name is None or name in self._failed:
            return None
        if name in installed_engines(self.device, self.precision):
            try:
                engine = self._chosen.get(name) or self._open(name)
            except EngineUnavailable:  # broken since: measure again
                self._unopened = name
                return None
            self._chosen[name] = engine
            self.choice, self._measured_here = record, False
            self._steady = None if _confirmed(record) else []
            return engine
        if name is not None:  # uninstalled since, or not offered here: measure again
            self._unopened = name
        return None

    def _settle(self, batch):
        """The engine for ``batch``'s class: remembered for it, or measured now (once per
        class for this predictor)."""
        size_class, self._steady = self._input_class(batch), None
        record = read_choices().get(class_key(self._base_key, size_class))
        engine = self._remembered(record) if record is not None else None
        if engine is None:
            engine = self._choose(batch, class_key(self._base_key, size_class))
        self._engine, self._class = engine, size_class

    def _choose(self, batch, key, again=False):
        engines, unavailable = {PADDLE: self._chosen.get(PADDLE) or self._open(PADDLE)}, {}
        for name in installed_engines(self.device, self.precision)[1:]:
            if name in self._failed:
                unavailable[name] = 'failed at run time in this predictor'
                continue
            try:
                engines[name] = self._chosen.get(name) or self._open(name)
            except EngineUnavailable as exc:
                unavailable[name] = str(exc)
        limit = BFLOAT16_LIMIT if self.precision == 'bf16' else FLOAT32_LIMIT
        name, rates, failed = choose_engine(engines, batch[:AUTO_MEASURED_BATCH], limit)
        self._chosen[name] = engines[name]
        self.choice = {'engine': name, 'images_per_s': rates,
                       'batch_size': min(len(batch), AUTO_MEASURED_BATCH),
                       'unavailable': {**unavailable, **failed},
                       'measured': datetime.datetime.now().isoformat(timespec='seconds')}
        if again:
            self.choice['measured_again'] = True
        remember_choice(key, self.choice)
        self._measured_here = True
        self._steady = None if again else []
        return engines[name]

    def _input_class(self, batch):
        return input_class(batch.shape, self.meta.get('input_shape'))

    def _check_steady(self, batch, seconds):
        """Time a choice not yet confirmed (freshly measured, or remembered from a process
        that ended before confirming it); measure once more when, running steadily, it
        loses to the runner-up's measured speed by more than the noise, else record it as
        confirmed."""
        self._steady.append(len(batch) / max(seconds, 1e-9))
        if len(self._steady) < STEADY_CALLS:
            return
        steady, self._steady = statistics.median(self._steady), None
        rates = self.choice.get('images_per_s') or {}
        others = [rate for name, rate in rates.items() if name != self.engine]
        key = class_key(self._base_key, self._class)
        # Below its own measured rate as well: batches larger than the measured images run
        # at another rate on every engine, which is no noise.
        if (others and steady < (1 - STEADY_NOISE) * max(others)
                and steady < (1 - STEADY_NOISE) * rates.get(self.engine, 0.0)):
            try:
                self._engine = self._choose(batch, key, again=True)
            except EngineUnavailable:  # nothing else runs it now: keep the engine that does
                pass
        else:
            self.choice = dict(self.choice, confirmed=True)
            remember_choice(key, self.choice)

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
        batch = np.ascontiguousarray(batch)
        if self._base_key is not None and self._input_class(batch) != self._class:
            self._settle(batch)
        try:
            start = time.perf_counter()
            outputs = self._engine.all_outputs(batch)
            seconds = time.perf_counter() - start
        except Exception as exc:  # Paddle reports kernel failures as bare std::exception
            if self._may_fall_back():
                return self._named(self._fall_back(batch, exc))
            raise self._failure(batch, exc) from exc
        if self._steady is not None:
            self._check_steady(batch, seconds)
        return self._named(outputs)

    def _failure(self, batch, exc, also=''):
        hint = ('; oneDNN bfloat16 kernels fail on some graphs (dla_60_res2next at batch > 1 '
                'with Paddle 3.3), use precision="fp32"'
                if self.precision == 'bf16' and self.engine == PADDLE else '')
        return RuntimeError(f'{self.engine} failed on {self.prefix} ({self.precision}, '
                            f'input {list(batch.shape)}): {one_line(exc)}{also}{hint}')

    def _named(self, outputs):
        """A classifier's logits, or a dense model's outputs by the names its metadata
        gives."""
        if not self.output_names:
            return outputs[0]
        if len(outputs) != len(self.output_names):
            raise ModelFileError(f'{printable(self.prefix)} gives {len(outputs)} outputs where '
                                 f'its metadata names {len(self.output_names)}')
        return dict(zip(self.output_names, outputs))

    def _may_fall_back(self):
        """An engine 'auto' chose (not Paddle itself, not one the caller named) that
        failed at run time: Paddle Inference takes over."""
        return (self.requested == AUTO and self.engine != PADDLE and self.choice is not None
                and self.precision in CPU_PRECISIONS[PADDLE])

    def _fall_back(self, batch, exc):
        """``batch``'s outputs from Paddle Inference; once it has run them, say in one line
        that the chosen engine failed and forget the engine's remembered choices. Where
        Paddle fails as well, the input is at fault, not the engine: both errors are raised
        and the choice stays."""
        failed, paddle_engine = self.engine, self._chosen.get(PADDLE) or self._open(PADDLE)
        self._chosen[PADDLE] = paddle_engine
        try:
            outputs = paddle_engine.all_outputs(batch)
        except Exception as paddle_exc:  # noqa: BLE001 - reported with the engine's error
            raise self._failure(batch, exc, f'; Paddle Inference as well: '
                                            f'{one_line(paddle_exc)}') from exc
        sys.stderr.write(f'paddle_dla: warning: {failed} failed on {printable(self.prefix)} '
                         f'(input {list(batch.shape)}: {one_line(exc)}); Paddle Inference '
                         f'runs it from now on, and the remembered choice is forgotten\n')
        sys.stderr.flush()
        forget_engine(self._base_key, failed)
        self._steady = None
        self._chosen.pop(failed, None)
        self._failed.add(failed)
        self._engine = paddle_engine
        self.choice = dict(self.choice, engine=PADDLE, failed_at_run_time=failed)
        return outputs


def _recorded_engine(record):
    """The engine a remembered record names, or None for anything that is not a record
    (the file is a cache any process may have written): a name among the engines, with its
    measured rates, if any, as numbers by name."""
    if not isinstance(record, dict) or record.get('engine') not in ENGINES:
        return None
    rates = record.get('images_per_s', {})
    if not (isinstance(rates, dict) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in rates.values())):
        return None
    return record['engine']


def _confirmed(record):
    """Whether a choice has held up in steady calls (or was measured again after it did
    not): a choice measured by a process that ended sooner is timed again where it is
    reused."""
    return bool(record.get('confirmed') or record.get('measured_again'))


def _precision_for(prefix, meta, device, precision, engine):
    """The precision asked for, or by default INT8 for an export that carries an INT8
    model (on CPU) and fp32 otherwise; INT8 is refused where it cannot run."""
    carried = int8_model_file(prefix, meta) is not None
    runs_int8 = int8_engine(meta)
    if precision is None:  # INT8 where its engine is installed; else the float model
        return (INT8 if carried and device == 'cpu' and engine in (AUTO, runs_int8)
                and importable(runs_int8) else 'fp32')
    if precision == INT8 and not carried:
        raise ExportedModelError(f'{printable(prefix)} carries no INT8 model; make one with: '
                                 f'paddle-dla quantize --exported {printable(prefix)} '
                                 f'--calib-dir IMAGES --out DIR')
    if precision == INT8 and engine not in (AUTO, runs_int8):
        raise ValueError(f'this INT8 model runs on {runs_int8}, not {engine}')
    return precision


def _measurement_note(choice, unopened):
    """What the measurement found: the rates, fastest first, and the engines left out."""
    rates = sorted(choice.get('images_per_s', {}).items(), key=lambda kv: -kv[1])
    note = ': ' + ', '.join(f'{name} {rate:.3g}' for name, rate in rates) + ' img/s'
    if len(rates) == 1 and not choice.get('unavailable'):
        note += ', no other engine installed'
    if choice.get('unavailable'):
        note += f'; {", ".join(choice["unavailable"])} could not run it'
    if unopened:
        note += f'; the remembered {unopened} is no longer available'
    return note


def describe_engine(run):
    """``'openvino (auto: remembered for this machine)'``: the engine that runs ``run`` (a
    :class:`Predictor`, or an eager callable) and how it was chosen, one phrase for every
    report that names it."""
    if isinstance(run, Predictor):
        return f'{run.engine} ({run.how_chosen})'
    return 'eager (requested)'


def weights_digest(model):
    """The content of a model's parameters and buffers, for naming what is derived from it."""
    sha = hashlib.sha256()
    for name, value in sorted(model.state_dict().items()):
        array = np.ascontiguousarray(value.numpy())
        sha.update(f'{name} {array.dtype} {array.shape}'.encode())
        sha.update(array.tobytes())
    return sha.hexdigest()


def _cache_lock(folder):
    """Hold ``folder``'s lock while its export and INT8 models are made: processes compiling
    the same model at once (the ranks of ``eval --nproc N``) make them once, the others
    waiting to read them; a wait says once on stderr what it waits for."""
    def waiting(lock_file):
        sys.stderr.write(f'paddle_dla: waiting for another process that is making '
                         f'{printable(folder)} (lock {printable(lock_file)})\n')
        sys.stderr.flush()
    return cache_lock(compiled_lock_name(folder), waiting=waiting)


def compile_model(model, input_shape=(None, 3, 224, 224), engine=AUTO, precision=None,
                  threads=None, device='cpu', calibration=None):
    """``model`` as a fast inference callable (a :class:`Predictor`): exported once into
    the cache, keyed by variant, weights and input shape, so the cost of export and engine
    choice is paid on first use only. The eager model stays as it is, for training.
    ``precision='int8'`` quantizes the export once per ``calibration`` (float32 ``[1, C, H,
    W]`` inputs prepared by the model's recipe), cached by their content."""
    precision = precision or 'fp32'
    check_engine(engine, device, precision)  # before the seconds an export takes
    if precision == INT8 and (calibration is None or len(calibration) == 0):
        raise ValueError('precision="int8" needs calibration=[inputs prepared as the model\'s]')
    shape = 'x'.join('N' if d is None else str(int(d)) for d in input_shape)
    outputs = '-'.join(model.output_names) if is_dense_model(model) else ''
    folder = os.path.join(compiled_home(), 'exports', '-'.join(
        p for p in (model.config.name, weights_digest(model)[:20], shape, outputs) if p))
    prefix, calibrated = os.path.join(folder, 'model'), None
    if precision == INT8:
        # by the scheme that makes it: a new scheme makes new INT8 models
        calibrated = os.path.join(folder, f'int8-{calibration_digest(calibration)[:20]}-'
                                  f'{scheme_tag(dense=is_dense_model(model))}', 'model')

    def exported():  # the metadata is moved into place last: with it, the rest is there
        return all(os.path.isfile(prefix + s) for s in (META_SUFFIX, PARAMS_SUFFIX)) and any(
            os.path.isfile(prefix + s) for s in MODEL_SUFFIXES)

    def quantized():
        return calibrated is None or int8_model_file(calibrated,
                                                     read_metadata(calibrated)) is not None

    if not (exported() and quantized()):  # a cache holding both is only read, never locked
        with _cache_lock(folder):
            if not exported():
                export(model, prefix, input_shape)
            if not quantized():
                quantize_export(prefix, calibrated, calibration)
    prefix = calibrated or prefix
    return Predictor(prefix, device=device, precision=precision, threads=threads,
                     engine=engine)
