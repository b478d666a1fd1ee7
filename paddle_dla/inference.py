"""The deployed path: export a model once, then serve it with Paddle Inference.

On CPU the predictor runs oneDNN kernels on all cores (several times faster than eager
mode), and in bfloat16 on CPUs with AVX512-BF16 or AMX. Paddle 3 writes ``.json`` +
``.pdiparams``; Paddle 2.6 writes ``.pdmodel`` + ``.pdiparams``; both are read.
"""
import copy
import json
import os

import numpy as np
import paddle

MODEL_SUFFIXES = ('.json', '.pdmodel')
META_SUFFIX = '.dla.json'
PRECISIONS = ('fp32', 'bf16', 'fp16')


class ExportedModelError(FileNotFoundError):
    """No exported model where one was expected."""


def export(model, path_prefix, input_shape=(None, 3, 224, 224), weights=None):
    """Write ``model`` as a Paddle inference model at ``path_prefix``; returns the files.

    ``input_shape`` may leave any dimension ``None`` (dynamic). A small
    ``<prefix>.dla.json`` records the variant, classes and preprocessing for ``predict``.
    """
    from paddle.static import InputSpec

    if len(input_shape) != 4:
        raise ValueError(f'input_shape must be NCHW, got {input_shape}')
    net = copy.deepcopy(model)  # to_static rewrites forward; keep the caller's model eager
    net.eval()
    spec = InputSpec(list(input_shape), 'float32', 'x')
    static = paddle.jit.to_static(net, input_spec=[spec], full_graph=True)
    folder = os.path.dirname(os.path.abspath(path_prefix))
    os.makedirs(folder, exist_ok=True)
    paddle.jit.save(static, path_prefix)
    meta = {'variant': model.config.name, 'num_classes': model.num_classes,
            'in_chans': model.in_chans, 'input_shape': list(input_shape),
            'features_only': model.features_only, 'weights': weights}
    with open(path_prefix + META_SUFFIX, 'w', encoding='utf-8') as f:
        json.dump(meta, f, indent=2)
    return [path_prefix + s for s in (*MODEL_SUFFIXES, '.pdiparams', META_SUFFIX)
            if os.path.exists(path_prefix + s)]


def resolve_prefix(path):
    """Accept a path prefix, a model/params file, or a folder holding one exported model."""
    path = os.fspath(path)
    if os.path.isdir(path):
        params = sorted(f for f in os.listdir(path) if f.endswith('.pdiparams'))
        if len(params) != 1:
            raise ExportedModelError(
                f'{path} holds {len(params)} exported models (.pdiparams); name one by its '
                f'path prefix' if params else f'no exported model (.pdiparams) in {path}; '
                f'create one with: paddle-dla export --model dla_34 --out {path}')
        return os.path.join(path, params[0][:-len('.pdiparams')])
    for suffix in (*MODEL_SUFFIXES, '.pdiparams', META_SUFFIX):
        if path.endswith(suffix):
            return path[:-len(suffix)]
    return path


def read_metadata(path_prefix):
    meta = path_prefix + META_SUFFIX
    if not os.path.isfile(meta):
        return {}
    with open(meta, encoding='utf-8') as f:
        return json.load(f)


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
        from paddle import inference

        prefix = resolve_prefix(path_prefix)
        model_file = next((prefix + s for s in MODEL_SUFFIXES if os.path.isfile(prefix + s)), None)
        if model_file is None or not os.path.isfile(prefix + '.pdiparams'):
            raise ExportedModelError(
                f'no exported model at {prefix} (expected {prefix}.json or .pdmodel, and '
                f'.pdiparams); create one with: paddle-dla export --model dla_34 --out DIR')
        if precision not in PRECISIONS:
            raise ValueError(f'precision must be one of {", ".join(PRECISIONS)}, got {precision!r}')
        self.meta = read_metadata(prefix)
        self.prefix, self.device, self.precision = prefix, device, precision
        config = inference.Config(model_file, prefix + '.pdiparams')
        if device == 'cpu':
            if precision == 'fp16':
                raise ValueError('fp16 is for GPUs; on CPU use fp32 or bf16')
            if precision == 'bf16' and not cpu_supports_bf16():
                raise ValueError('this CPU has no bfloat16 support (AVX512-BF16 or AMX); '
                                 'use precision="fp32"')
            config.disable_gpu()
            config.enable_mkldnn()
            config.set_cpu_math_library_num_threads(threads or os.cpu_count() or 1)
            if precision == 'bf16':
                config.enable_mkldnn_bfloat16()
        elif device.startswith('gpu'):
            device_id = int(device.split(':')[1]) if ':' in device else 0
            kind = {'fp32': inference.PrecisionType.Float32,
                    'fp16': inference.PrecisionType.Half,
                    'bf16': inference.PrecisionType.Bfloat16}[precision]
            config.enable_use_gpu(256, device_id, kind)
            if tensorrt:
                config.enable_tensorrt_engine(workspace_size=1 << 30, max_batch_size=64,
                                              min_subgraph_size=3, precision_mode=kind,
                                              use_static=False, use_calib_mode=False)
        else:
            raise ValueError(f'device must be "cpu" or "gpu[:N]", got {device!r}')
        config.switch_ir_optim(True)
        config.disable_glog_info()
        self._predictor = inference.create_predictor(config)
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
