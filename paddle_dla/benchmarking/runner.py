"""Images per second of DLA on this machine, for every engine a user could pick: Paddle
eager, Paddle Inference, OpenVINO and onnxruntime (fp32, and bf16 where the CPU has it),
and timm's PyTorch model (eager and channels-last) when installed. The dense models
(``centernet_dla34`` ..) run beside their PyTorch reference with torchvision's
``deform_conv2d``, which the source checkout's tests hold.

Each engine runs in its own process (:mod:`paddle_dla.benchmarking.worker`), so that no thread
pool steals from another, and the processes take turns: every round times each engine
once, in an order rotated from round to round, so that all see the same machine. The same
rounds time a large matrix product (fp32, and bf16 where supported): this machine's GEMM
peak, of which each engine's GFLOP/s is a fraction. Logit errors are against Paddle eager
fp32 on the same input. The command line is ``paddle-dla bench``.
"""
import datetime
import glob
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile

import numpy as np
import paddle

from ..core import SOURCE_ROOT
from ..core.atomic import atomic_output
from ..core.machine import cpu_description, installed_versions
from ..core.parity import relative_error
from ..evaluation.transforms import Preprocess
from ..inference.engines import (BENCH_REFERENCE, EAGER, ENGINES, INT8, INT8_ENGINE,
                                 NNCF_BASELINE, OPTIONAL_ENGINES, TORCH_CHANNELS_LAST,
                                 TORCH_EAGER)
from ..inference.predictor import cpu_supports_bf16, export
from ..inference.quantize import quantization_available, quantize_export
from ..inference.runtimes import importable, installed_engines
from ..models.complexity import count_macs
from ..models.dcn import DCN
from ..models.layers import BN_MOMENTUM
from ..models.registry import DENSE_FAMILY, get_model
from ..zoo.factory import create_model
from .worker import GEMM_SIZE

REFERENCE = BENCH_REFERENCE
PEERS = OPTIONAL_ENGINES
THREAD_VARIABLES = ('OMP_NUM_THREADS', 'MKL_NUM_THREADS', 'OPENBLAS_NUM_THREADS')
BENCHMARKED_PACKAGES = ('paddlepaddle', 'openvino', 'onnxruntime', 'paddle2onnx', 'nncf',
                        'torch')
# A round times each engine for about this long, so that fast engines at batch 1 are not
# timed on a single run of a few milliseconds.
ROUND_SECONDS = 0.5
# Random features change sharply from pixel to pixel, so random offset weights of 0.01 make
# CenterNet at 512 px so ill-conditioned that PyTorch's own float32 run is 5e-2 from its
# float64 one; at 0.001 the offsets stay fractional (the same work) and every engine is
# within 3e-6 of it.
DCN_OFFSET_SCALE = 0.001


def say(message):
    """Progress on stderr, so that the table on stdout stays clean."""
    print(message, file=sys.stderr, flush=True)


def calibrated_model(name, seed=0):
    """Random weights whose BN statistics fit random images, so activations keep their
    scale through the network. (No trained weights are needed to measure speed; the
    photograph agreement column is therefore only a proxy for trained weights.)"""
    paddle.seed(seed)
    model = create_model(name)
    for layer in model.sublayers():  # small deformable offsets, not all zero (see below)
        if isinstance(layer, DCN):
            offsets = layer.conv_offset_mask.weight
            offsets.set_value(paddle.randn(offsets.shape) * DCN_OFFSET_SCALE)
    bns = [m for m in model.sublayers() if isinstance(m, paddle.nn.BatchNorm2D)]
    for bn in bns:
        bn._momentum = 0.0  # running statistics := those of the calibration batch
    model.train()
    with paddle.no_grad():
        model(paddle.randn([8, 3, 64, 64]))
    for bn in bns:
        bn._momentum = BN_MOMENTUM
    model.eval()
    return model


def _torch_installed():
    return importable('torch') and importable('timm')


def engine_specs(bf16, dense=None):
    """Every engine this machine can run: name -> (kind, precision). A dense model (its
    ``DenseConfig``) is compared with its PyTorch reference in eager mode, which exists for
    the CenterNet-style ones. INT8 (``paddle-dla quantize``) runs where NNCF is installed; a
    classifier's beside NNCF's INT8 with NNCF's defaults (a dense network's is made by
    those defaults)."""
    precisions = ('fp32', 'bf16') if bf16 else ('fp32',)
    if quantization_available() is None:
        precisions += (INT8,)
    specs = {REFERENCE: (EAGER, 'fp32')}
    for precision in precisions:
        for engine in ENGINES:
            if precision == INT8 and engine != INT8_ENGINE:
                continue
            if engine in installed_engines('cpu', precision):
                specs[f'{engine} {precision}'] = (engine, precision)
    if INT8 in precisions and dense is None:
        specs[NNCF_BASELINE] = (NNCF_BASELINE, INT8)
    if dense is not None:
        if dense.is_centernet and _torch_installed() and importable('torchvision'):
            specs[TORCH_EAGER] = (TORCH_EAGER, 'fp32')
    elif _torch_installed():
        specs[TORCH_EAGER] = (TORCH_EAGER, 'fp32')
        specs[TORCH_CHANNELS_LAST] = (TORCH_CHANNELS_LAST, 'fp32')
    return specs


def gemm_specs(bf16):
    specs = {'gemm fp32': ('gemm', 'fp32')}
    if bf16 and _torch_installed():
        specs['gemm bf16'] = ('gemm', 'bf16')
    return specs


class Worker:
    """One engine in its own process, driven by JSON lines (see ``benchmarking.worker``)."""

    def __init__(self, name, kind, precision, model, workdir, threads):
        self.name, self.precision, self.error = name, precision, None
        spec = {'kind': kind, 'precision': precision, 'model': model, 'workdir': workdir,
                'threads': threads}
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            p for p in (SOURCE_ROOT, os.environ.get('PYTHONPATH')) if p))
        # Every thread pool a library might start, sized before any of them loads.
        env.update({name: str(threads) for name in THREAD_VARIABLES})
        self._log = tempfile.TemporaryFile()
        self._proc = subprocess.Popen(
            [sys.executable, '-m', 'paddle_dla.benchmarking.worker', json.dumps(spec)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log, text=True,
            env=env)

    def wait_ready(self):
        self.error = self._receive().get('error')

    def ask(self, **command):
        if self.error:
            return {'error': self.error}
        self._proc.stdin.write(json.dumps(command) + '\n')
        self._proc.stdin.flush()
        answer = self._receive()
        if 'error' in answer:
            self.error = answer['error']
        return answer

    def _receive(self):
        line = self._proc.stdout.readline()
        if not line:
            self._proc.wait()
            self._log.seek(0)
            tail = self._log.read().decode('utf-8', 'replace').strip().splitlines()[-1:]
            return {'error': f'the engine process ended (exit {self._proc.returncode})'
                             + (f': {tail[0][:160]}' if tail else '')}
        return json.loads(line)

    def close(self):
        if self._proc.poll() is None:
            self._proc.stdin.close()
            try:
                self._proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._log.close()


def start_workers(specs, model, workdir, threads):
    """All engine processes start at once (their imports overlap); then each is awaited."""
    workers = [Worker(name, kind, precision, model, workdir, threads)
               for name, (kind, precision) in specs.items()]
    for worker in workers:
        worker.wait_ready()
    return workers


def photo_batch(img_size):
    """Real photographs (scikit-image's samples), preprocessed as for evaluation."""
    try:
        import skimage
    except ImportError:
        return None
    files = sorted(glob.glob(os.path.join(skimage.data_dir, '*.png')) +
                   glob.glob(os.path.join(skimage.data_dir, '*.jpg')))
    preprocess = Preprocess(img_size=img_size)
    arrays = []
    for f in files:
        try:
            arrays.append(preprocess(f))
        except Exception:  # noqa: BLE001 - a sample that PIL cannot read is just skipped
            continue
    return np.stack(arrays) if arrays else None


def logit_checks(workers, inputs, workdir):
    """Each engine's relative logit error against Paddle eager on a random batch, and its
    top-1 agreement with it on the photographs (when there are any)."""
    outputs = {}
    for worker in workers:
        if worker.name.startswith('gemm'):
            continue
        for kind, path in inputs.items():
            out = os.path.join(workdir, f'{worker.name}-{kind}.npy'.replace(' ', '_'))
            if 'error' not in worker.ask(op='logits', input=path, output=out, chunk=8):
                outputs[worker.name, kind] = np.load(out)
    checks = {}
    for worker in workers:
        ours = {k: outputs.get((worker.name, k)) for k in inputs}
        reference = {k: outputs.get((REFERENCE, k)) for k in inputs}
        if ours['random'] is None or reference['random'] is None:
            continue
        checks[worker.name] = {'rel_logit_error': relative_error(ours['random'],
                                                                 reference['random'])}
        if 'photos' in inputs and ours['photos'] is not None:
            checks[worker.name]['top1_agreement_photos'] = float(np.mean(
                ours['photos'].argmax(1) == reference['photos'].argmax(1)))
            checks[worker.name]['rel_rms_photos'] = relative_rms(ours['photos'],
                                                                 reference['photos'])
    return checks


def relative_rms(ours, reference):
    """RMS of the difference over RMS of the reference: the INT8 accuracy measure."""
    return float(np.sqrt(np.mean((ours - reference) ** 2) / np.mean(reference ** 2)))


def timed_rounds(workers, batch_path, rounds, warmup):
    """Seconds per run of each engine over ``rounds`` rounds of alternating turns, with
    the peak memory of its process. Returns (round medians, memory) by engine name."""
    memory, runs = {}, {}
    for worker in workers:
        first = worker.ask(op='first', input=batch_path)
        if 'error' in first:
            continue
        memory[worker.name] = first['peak_mb']
        if warmup:
            warm = worker.ask(op='time', input=batch_path, runs=warmup)
            first['seconds'] = min(warm.get('seconds') or [first['seconds']])
        runs[worker.name] = max(1, math.ceil(ROUND_SECONDS / max(first['seconds'], 1e-4)))
    medians = {name: [] for name in runs}
    for r in range(rounds):
        turn = [w for w in workers if w.name in runs]
        turn = turn[r % len(turn):] + turn[:r % len(turn)] if turn else turn
        for worker in turn:
            answer = worker.ask(op='time', input=batch_path, runs=runs[worker.name])
            if 'seconds' in answer:
                # The GEMM stands for the machine's attainable peak: its fastest run, which
                # a busy moment (another engine's threads winding down) cannot slow.
                pick = min if worker.name.startswith('gemm') else statistics.median
                medians[worker.name].append(pick(answer['seconds']))
    return medians, memory


def rate_row(batch_size, medians, flops_per_image):
    """Median images/s over the rounds, and the spread of the rounds around it."""
    rates = sorted(batch_size / s for s in medians)
    median = statistics.median(rates)
    row = {'img_per_s': round(median, 2),
           'spread_pct': round(100 * (rates[-1] - rates[0]) / 2 / median, 1)}
    if flops_per_image:
        row['gflops'] = round(median * flops_per_image / 1e9, 1)
    return row


def measure(name, batch_sizes, rounds, warmup, img_size, threads, wanted, photos,
            gemm_rates):
    """Every engine on variant ``name``, for each batch size; rows of the table."""
    model = calibrated_model(name)
    flops = 2 * count_macs(model, (1, 3, img_size, img_size))
    bf16 = cpu_supports_bf16()
    entry = get_model(name)
    dense = entry.config if entry.family == DENSE_FAMILY else None
    photos = None if dense else photos  # agreement on photographs is a classifier's
    specs = {k: v for k, v in {**engine_specs(bf16, dense), **gemm_specs(bf16)}.items()
             if not wanted or k in wanted or k == REFERENCE or k.startswith('gemm')}
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        paddle.save(model.state_dict(), os.path.join(workdir, 'model.pdparams'))
        export(model, os.path.join(workdir, 'model'), (None, 3, img_size, img_size))
        inputs = {'random': _save(workdir, 'random', _random_batch(8, img_size))}
        if any(precision == INT8 for _, precision in specs.values()):
            photos = quantize_both(workdir, photos, img_size, anchor=NNCF_BASELINE in specs)
        if photos is not None:
            inputs['photos'] = _save(workdir, 'photos', photos)
        say(f'  {name}: starting {len(specs)} engine processes ...')
        workers = start_workers(specs, name, workdir, threads)
        try:
            checks = logit_checks(workers, inputs, workdir)
            for batch_size in batch_sizes:
                say(f'  {name}, batch {batch_size}: {rounds} rounds of '
                    f'{", ".join(w.name for w in workers if not w.error)}')
                batch_path = _save(workdir, f'batch{batch_size}',
                                   _random_batch(batch_size, img_size))
                medians, memory = timed_rounds(workers, batch_path, rounds, warmup)
                for gemm in (w for w in workers if w.name.startswith('gemm')):
                    if medians.get(gemm.name):
                        rate = 2 * GEMM_SIZE ** 3 / statistics.median(medians[gemm.name]) / 1e9
                        gemm_rates[gemm.precision] = max(gemm_rates.get(gemm.precision, 0), rate)
                for worker in workers:
                    if worker.name.startswith('gemm'):
                        continue
                    row = {'model': name, 'batch': batch_size, 'engine': worker.name,
                           'precision': worker.precision, 'img_per_s': None,
                           'peak_mb': memory.get(worker.name), 'error': worker.error,
                           **checks.get(worker.name, {})}
                    if medians.get(worker.name):
                        row.update(rate_row(batch_size, medians[worker.name], flops))
                    rows.append(row)
        finally:
            for worker in workers:
                worker.close()
    return rows


# The calibration inputs of a model measured without photographs (a dense network).
RANDOM_CALIBRATION = 32


def quantize_both(workdir, photos, img_size, anchor=True):
    """Our INT8 model and (with ``anchor``) NNCF's with its defaults, both calibrated on the
    same inputs: every other photograph with its mirror image (random images where there
    are none). Returns the photographs held out, on which every engine's logits are then
    compared."""
    if photos is None:
        calibration, held = _random_batch(RANDOM_CALIBRATION, img_size), None
    else:
        calibration = np.concatenate([photos[1::2], photos[1::2, :, :, ::-1]])
        held = np.ascontiguousarray(photos[::2])
    calibration = [x[None] for x in np.ascontiguousarray(calibration)]
    made = "ours and NNCF's defaults" if anchor else 'INT8'
    say(f'  quantizing ({made}) on {len(calibration)} inputs ...')
    source = os.path.join(workdir, 'model')
    quantize_export(source, os.path.join(workdir, 'int8', 'model'), calibration)
    if anchor:
        quantize_export(source, os.path.join(workdir, 'nncf', 'model'), calibration,
                        nncf_defaults=True)
    return held


def _random_batch(batch_size, img_size):
    return np.random.default_rng(0).standard_normal(
        (batch_size, 3, img_size, img_size)).astype('float32')


def _save(workdir, name, array):
    path = os.path.join(workdir, name + '.npy')
    np.save(path, array)
    return path


def add_ratios(rows, gemm_rates):
    """Ratios within each (model, batch): to PyTorch eager, to the best of OpenVINO and
    onnxruntime in the same precision (for INT8: to NNCF's defaults), to the fastest fp32
    engine, and to this machine's GEMM peak."""
    groups = {}
    for row in rows:
        groups.setdefault((row['model'], row['batch']), {})[row['engine']] = row
    for group in groups.values():
        torch_rate = (group.get(TORCH_EAGER) or {}).get('img_per_s')
        fp32 = [group[f'{e} fp32']['img_per_s'] for e in ENGINES
                if (group.get(f'{e} fp32') or {}).get('img_per_s')]
        for row in group.values():
            rate, precision = row['img_per_s'], row['precision']
            names = ([NNCF_BASELINE] if precision == INT8 and row['engine'] != NNCF_BASELINE
                     else [] if precision == INT8 else [f'{p} {precision}' for p in PEERS])
            peers = [group[n]['img_per_s'] for n in names
                     if (group.get(n) or {}).get('img_per_s')]
            row['vs_torch_eager'] = round(rate / torch_rate, 2) if rate and torch_rate else None
            row['vs_best_peer'] = round(rate / max(peers), 2) if rate and peers else None
            row['vs_best_fp32'] = round(rate / max(fp32), 2) if rate and fp32 else None
            peak = gemm_rates.get(precision)
            row['of_gemm_peak'] = (round(row['gflops'] / peak, 2)
                                   if rate and peak and 'gflops' in row else None)


def environment(threads, photos, gemm_rates):
    cpu, _, features = cpu_description()
    return {'date': datetime.date.today().isoformat(), 'cpu': cpu,
            'cpu_features': ' '.join(features), 'threads': threads, 'bf16': cpu_supports_bf16(),
            'versions': installed_versions(BENCHMARKED_PACKAGES),
            'photos': None if photos is None else len(photos),
            'gemm_peak_gflops': {k: round(v, 1) for k, v in gemm_rates.items()}}


def headline(env):
    versions = ', '.join(f'{k} {v}' for k, v in env['versions'].items())
    peak = ', '.join(f'{k} {v:.0f} GFLOP/s' for k, v in env['gemm_peak_gflops'].items())
    return (f'{env["date"]}, {env["cpu"]} ({env["cpu_features"]}), {env["threads"]} threads; '
            f'{versions}; GEMM peak {peak or "not measured"}'
            + (f'; top-1 agreement on {env["photos"]} photographs' if env['photos'] else ''))


def format_table(rows):
    def cell(value, spec, suffix=''):
        return '-' if value is None else format(value, spec) + suffix
    lines = ['| model | batch | engine | img/s | spread | vs best of OpenVINO/onnxruntime '
             '(INT8: vs NNCF) | vs best fp32 | vs torch eager | GFLOP/s | of GEMM peak | '
             'rel. logit error | rel. RMS error (photos) | top-1 agreement (photos) | '
             'process peak memory (MB) |', '|---' * 14 + '|']
    for r in rows:
        agree = r.get('top1_agreement_photos')
        lines.append(
            f'| {r["model"]} | {r["batch"]} | {r["engine"]} | {cell(r["img_per_s"], ".1f")} | '
            f'{cell(r.get("spread_pct"), ".0f", "%")} | {cell(r.get("vs_best_peer"), ".2f", "x")} | '
            f'{cell(r.get("vs_best_fp32"), ".2f", "x")} | '
            f'{cell(r.get("vs_torch_eager"), ".2f", "x")} | {cell(r.get("gflops"), ".0f")} | '
            f'{cell(None if r.get("of_gemm_peak") is None else 100 * r["of_gemm_peak"], ".0f", "%")} | '
            f'{cell(r.get("rel_logit_error"), ".1e")} | {cell(r.get("rel_rms_photos"), ".1e")} | '
            f'{cell(None if agree is None else 100 * agree, ".1f", "%")} | '
            f'{cell(r["peak_mb"], ".0f")} |' + (f' failed: {r["error"]}' if r['error'] else ''))
    return '\n'.join(lines)


def run_benchmark(models, batch_sizes, rounds, warmup, img_size, threads=None, engines=None,
                  with_photos=True, json_path=None):
    """Measure, print the table, optionally write JSON; returns the result rows."""
    threads = threads or os.cpu_count() or 1
    photos = photo_batch(img_size) if with_photos else None
    rows, gemm_rates = [], {}
    for name in models:
        say(f'measuring {name} at batch {", ".join(map(str, batch_sizes))} '
            f'({rounds} rounds, {warmup} warm-up runs per engine, each in its own process) ...')
        rows += measure(get_model(name).name, batch_sizes, rounds, warmup, img_size, threads,
                        engines, photos, gemm_rates)
    add_ratios(rows, gemm_rates)
    entries = [get_model(n) for n in models]
    dense = {e.name for e in entries if e.family == DENSE_FAMILY}
    classifiers = {e.name for e in entries} - dense
    env = environment(threads, photos if classifiers else None, gemm_rates)
    int8 = {r['model'] for r in rows if r['precision'] == INT8}
    print(headline(env)
          + ('; the INT8 models calibrated on every other photograph and its mirror image, '
             'the logits compared on the rest' if env['photos'] and int8 & classifiers else '')
          + (f'; a dense network\'s INT8 model calibrated on {RANDOM_CALIBRATION} random '
             f'inputs' if int8 & dense else ''))
    print(format_table(rows))
    if json_path:
        with atomic_output(json_path) as tmp, open(tmp, 'w', encoding='utf-8') as f:
            json.dump({'environment': env, 'results': rows}, f, indent=2)
    return rows
