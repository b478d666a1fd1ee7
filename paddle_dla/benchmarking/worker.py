"""One engine of the benchmark, alone in its own process: ``python -m paddle_dla.benchmarking.worker
SPEC``. It builds the engine, says ``ready``, then answers one JSON command per line on
stdin (run once and measure memory, time N runs, write logits) until stdin closes. Between
commands it blocks on stdin, so it takes no CPU while the other engines take their turn.
"""
import json
import os
import sys
import time

import numpy as np

from ..core import SOURCE_ROOT
from ..inference.eager import eager_predictor
from ..inference.engines import (EAGER, INT8, NNCF_BASELINE, OPENVINO, TORCH_CHANNELS_LAST,
                                 TORCH_EAGER)
from ..inference.predictor import Predictor
from ..models.registry import DENSE_FAMILY, get_model
from ..weights.convert.mapping import to_torch_key
from ..weights.convert.verify import timm_holding, torch_predictor
from ..zoo.factory import create_model

REFERENCE_FOLDER = os.path.join(SOURCE_ROOT, 'tests')
# Matrices of the GEMM peak: large enough that the kernel, not the call, is timed.
GEMM_SIZE = 2048


def _paddle_model(spec):
    model = create_model(spec['model'],
                         pretrained=os.path.join(spec['workdir'], 'model.pdparams'))
    model.eval()
    return model


def _torch_engine(spec, channels_last):
    import torch
    torch.set_num_threads(spec['threads'])
    reference = timm_holding(_paddle_model(spec)).eval()
    if not channels_last:
        return torch_predictor(reference)
    reference = reference.to(memory_format=torch.channels_last)

    def predict(batch):
        with torch.no_grad():
            x = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
            return reference(x).numpy()
    return predict


def _gemm_candidates(precision):
    """Square matrix products in ``precision`` by each BLAS at hand: NumPy's (fp32), and
    PyTorch's (oneDNN/MKL; fp32 and bf16) where installed."""
    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((GEMM_SIZE, GEMM_SIZE)).astype('float32') for _ in '12')
    candidates = [] if precision != 'fp32' else [lambda _batch: (a @ b)[:1, :8]]
    try:
        import torch
    except ImportError:
        return candidates
    dtype = torch.bfloat16 if precision == 'bf16' else torch.float32
    ta, tb = torch.from_numpy(a).to(dtype), torch.from_numpy(b).to(dtype)

    def product(_batch):
        with torch.no_grad():
            return torch.mm(ta, tb)[:1, :8].float().numpy()
    return candidates + [product]


def _gemm_engine(spec):
    """The fastest matrix product here: this machine's attainable peak."""
    try:
        import torch
        torch.set_num_threads(spec['threads'])
    except ImportError:
        pass
    candidates = _gemm_candidates(spec['precision'])
    if not candidates:
        raise RuntimeError(f'no {spec["precision"]} matrix product here (PyTorch needed)')
    return min(candidates, key=lambda f: min(timed_runs(f, None, 3)))


def _torch_dense_engine(spec):
    """The PyTorch reference of a dense model (torchvision's ``deform_conv2d`` as DCNv2)
    holding our weights. It lives with the tests, in the source checkout."""
    import torch
    torch.set_num_threads(spec['threads'])
    model = _paddle_model(spec)
    try:
        sys.path.insert(0, REFERENCE_FOLDER)
        from dense_reference import CenterNetReference
    except ImportError as exc:
        if exc.name != 'dense_reference':
            raise RuntimeError(f'the PyTorch reference needs {exc.name}: pip install torch '
                               f'torchvision timm') from None
        raise RuntimeError(f'the PyTorch reference of the dense models is '
                           f'tests/dense_reference.py of the source checkout (not found in '
                           f'{REFERENCE_FOLDER})') from None
    finally:
        sys.path.remove(REFERENCE_FOLDER)
    if not hasattr(model, 'heads'):
        raise RuntimeError(f'no PyTorch reference is benchmarked for {model.config.name}')
    reference = CenterNetReference(dict(model.heads), model.head_conv).eval()
    state = {to_torch_key(k): torch.from_numpy(v.numpy()) for k, v in
             model.state_dict().items()}
    missing, unexpected = reference.load_state_dict(state, strict=False)
    unused = [k for k in missing if not k.startswith('base.fc.')]
    if unused or unexpected:  # only the backbone's unused classifier may be left out
        raise RuntimeError(f'the PyTorch reference does not fit: {unused + unexpected}')

    def predict(batch):
        with torch.no_grad():
            return {k: v.numpy() for k, v in reference(torch.from_numpy(batch)).items()}
    return predict


def _every_output(engine, names=None):
    """A dense model's outputs as one array, each image's heads flattened side by side in
    the order of their names, so that every engine answers one array and the comparison
    with the reference covers every head. ``names``: those of an engine that answers a
    bare array or a sequence (a model's own forward)."""
    def run(batch):
        out = engine(batch)
        if names and not isinstance(out, dict):
            out = dict(zip(names, out if isinstance(out, (tuple, list)) else [out]))
        if isinstance(out, dict):
            return np.concatenate([np.asarray(out[k]).reshape(len(batch), -1)
                                   for k in sorted(out)], axis=1)
        return np.asarray(out[0] if isinstance(out, (tuple, list)) else out)
    return run


def build_engine(spec):
    kind = spec['kind']
    if kind == 'gemm':
        return _gemm_engine(spec)
    if kind == EAGER:
        model = _paddle_model(spec)
        return _every_output(eager_predictor(model), getattr(model, 'output_names', None))
    if kind in (TORCH_EAGER, TORCH_CHANNELS_LAST):
        if get_model(spec['model']).family == DENSE_FAMILY:
            return _every_output(_torch_dense_engine(spec))
        return _torch_engine(spec, kind == TORCH_CHANNELS_LAST)
    if kind == NNCF_BASELINE:
        return Predictor(os.path.join(spec['workdir'], 'nncf', 'model'), precision=INT8,
                         threads=spec['threads'], engine=OPENVINO)
    folder = 'int8' if spec['precision'] == INT8 else ''
    return _every_output(Predictor(os.path.join(spec['workdir'], folder, 'model'),
                                   precision=spec['precision'], threads=spec['threads'],
                                   engine=kind))


def first_run(engine, batch):
    """Seconds of a first run at this batch size, and the peak resident memory of this
    process since it started (the engine, its weights and its largest run so far)."""
    start = time.perf_counter()
    engine(batch)
    seconds = time.perf_counter() - start
    return seconds, peak_rss_mb()


def peak_rss_mb():
    """This process's high-water resident memory (``VmHWM``: unlike ``ru_maxrss``, not
    inherited from the process that started this one); None where unknown."""
    try:
        with open('/proc/self/status', encoding='ascii') as f:
            for line in f:
                if line.startswith('VmHWM:'):
                    return round(int(line.split()[1]) / 1024)
    except (OSError, ValueError):
        pass
    return None


def timed_runs(engine, batch, runs):
    seconds = []
    for _ in range(runs):
        start = time.perf_counter()
        engine(batch)
        seconds.append(time.perf_counter() - start)
    return seconds


def logits(engine, batch, chunk):
    return np.concatenate([engine(batch[i:i + chunk]) for i in range(0, len(batch), chunk)])


def answer(engine, command):
    batch = np.load(command['input']) if 'input' in command else None
    op = command['op']
    if op == 'first':
        seconds, peak_mb = first_run(engine, batch)
        return {'seconds': seconds, 'peak_mb': peak_mb}
    if op == 'time':
        return {'seconds': timed_runs(engine, batch, command['runs'])}
    if op == 'logits':
        np.save(command['output'], logits(engine, batch, command['chunk']))
        return {}
    raise ValueError(f'unknown command {op!r}')


def serve(spec):
    """Answer on a private copy of stdout; fd 1 goes to stderr, so that what libraries
    print there cannot break the replies."""
    global _replies
    _replies = os.fdopen(os.dup(1), 'w')
    os.dup2(2, 1)
    try:
        engine = build_engine(spec)
    except Exception as exc:  # noqa: BLE001 - reported in the table as this engine's error
        reply({'error': ' '.join(str(exc).split())[:200] or type(exc).__name__})
        return
    reply({'ready': True})
    for line in sys.stdin:
        try:
            reply(answer(engine, json.loads(line)))
        except Exception as exc:  # noqa: BLE001 - one failed command, not the whole worker
            reply({'error': ' '.join(str(exc).split())[:200] or type(exc).__name__})


_replies = sys.stdout


def reply(message):
    _replies.write(json.dumps(message) + '\n')
    _replies.flush()


if __name__ == '__main__':
    serve(json.loads(sys.argv[1]))
