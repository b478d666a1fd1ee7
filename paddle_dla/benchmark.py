"""Images per second of DLA on this machine, every engine measured side by side in one
process with their runs interleaved: Paddle eager, Paddle Inference fp32 and bf16, and
(when installed) timm's PyTorch model in eager and channels-last modes. Ratios are to
PyTorch eager from the same run; logit errors are against Paddle eager fp32. Memory is
measured for each engine alone, in a child process: how much one run grows the resident
memory (activations, workspaces, caches). The command line is ``paddle-dla bench``.
"""
import datetime
import glob
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import paddle

from .atomic import atomic_output
from .convert.verify import timm_available, timm_holding, torch_predictor
from .dla import eager_predictor
from .evaluation.transforms import Preprocess
from .factory import create_model
from .inference import Predictor, cpu_supports_bf16, export
from .layers import BN_MOMENTUM
from .variants import get_config

PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def say(message):
    """Progress on stderr, so that the table on stdout stays clean."""
    print(message, file=sys.stderr, flush=True)


def rss_mb():
    try:
        with open('/proc/self/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE') / 2 ** 20
    except (OSError, ValueError):
        return float('nan')


def memory_probe(name, engine_name, batch_size, img_size, threads):
    """In a fresh process: build one engine, then print how much its first run grows the
    resident memory (activations, workspaces, caches), sampled every millisecond."""
    import threading
    model = calibrated_model(name)
    with tempfile.TemporaryDirectory() as workdir:
        engine = engines_for(model, workdir, threads, {engine_name}, lazy_torch=engine_name)[
            engine_name]
        batch = np.zeros((batch_size, 3, img_size, img_size), 'float32')
        before, peak, done = rss_mb(), [0.0], threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_mb())
                time.sleep(0.001)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        engine(batch)
        done.set()
        sampler.join()
        peak[0] = max(peak[0], rss_mb())
    print(json.dumps({'run_mb': round(max(0.0, peak[0] - before), 1)}))


def probe_memory(name, engine_name, batch_size, img_size, threads):
    """Memory of one run of ``engine_name``, measured alone in a child process."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (PACKAGE_ROOT, os.environ.get('PYTHONPATH')) if p))
    proc = subprocess.run([sys.executable, '-m', 'paddle_dla.benchmark',
                           f'{name},{engine_name},{batch_size},{img_size},{threads}'],
                          capture_output=True, text=True, timeout=600, env=env)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return None


def calibrated_model(name, seed=0):
    """Random weights whose BN statistics fit random images, so activations keep their
    scale through the network. (No trained weights are needed to measure speed; the
    photograph agreement column is therefore only a proxy for trained weights.)"""
    paddle.seed(seed)
    model = create_model(name)
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


def engines_for(model, workdir, threads, wanted, lazy_torch=None):
    """The engines to compare, all holding ``model``'s weights."""
    engines = {}

    engines['paddle eager'] = eager_predictor(model)
    if not wanted or wanted & {'inference fp32', 'inference bf16'}:
        prefix = os.path.join(workdir, model.config.name)
        export(model, prefix)
        engines['inference fp32'] = Predictor(prefix, threads=threads)
        if cpu_supports_bf16():
            engines['inference bf16'] = Predictor(prefix, precision='bf16', threads=threads)
    if lazy_torch is not None and not lazy_torch.startswith('torch'):
        return {k: v for k, v in engines.items() if k in wanted}
    if not timm_available():
        return _select(engines, wanted)
    import timm
    import torch
    reference = timm_holding(model)
    channels_last = timm.create_model(model.config.official_name)
    channels_last.load_state_dict(reference.state_dict())
    channels_last = channels_last.eval().to(memory_format=torch.channels_last)

    def torch_cl(batch):
        with torch.no_grad():
            x = torch.from_numpy(batch).contiguous(memory_format=torch.channels_last)
            return channels_last(x).numpy()
    engines['torch eager'] = torch_predictor(reference)
    engines['torch channels-last'] = torch_cl
    return _select(engines, wanted)


def _select(engines, wanted):
    """The wanted engines, and always Paddle eager: the reference for logit errors."""
    return {k: v for k, v in engines.items() if not wanted or k in wanted or k == 'paddle eager'}


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


def relative_error(ours, reference):
    return float(np.abs(ours - reference).max() / max(1.0, np.abs(reference).max()))


def run_chunked(engine, images, batch_size):
    return np.concatenate([engine(images[i:i + batch_size])
                           for i in range(0, len(images), batch_size)])


def photo_agreement(engines, photos):
    """Each engine's top-1 agreement with Paddle eager on the photographs."""
    if photos is None:
        return {}
    base = run_chunked(engines['paddle eager'], photos, 8).argmax(1)
    agreement = {}
    for engine_name, engine in engines.items():
        try:
            agreement[engine_name] = float(np.mean(
                run_chunked(engine, photos, 8 if 'bf16' not in engine_name else 1)
                .argmax(1) == base))
        except RuntimeError:
            agreement[engine_name] = None
    return agreement


def warm_up(engines, batch, warmup):
    """Run every engine once (its logit error against Paddle eager) plus ``warmup`` times;
    returns (errors, failures) by engine name."""
    reference = engines['paddle eager'](batch)
    errors, failed = {}, {}
    for engine_name, engine in engines.items():
        try:
            out = engine(batch)
            for _ in range(warmup):
                engine(batch)
            errors[engine_name] = relative_error(out, reference)
        except RuntimeError as exc:
            failed[engine_name] = ' '.join(str(exc).split())[:120]
    return errors, failed


def interleaved_times(engines, batch, rounds):
    """Seconds per run of every engine, rounds interleaved so that every engine sees the
    same machine state."""
    times = {k: [] for k in engines}
    for _ in range(rounds):
        for engine_name, engine in engines.items():
            start = time.perf_counter()
            engine(batch)
            times[engine_name].append(time.perf_counter() - start)
    return times


def measure(name, batch_sizes, rounds, warmup, img_size, threads, wanted, photos,
            with_memory=True):
    model = calibrated_model(name)
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        engines = engines_for(model, workdir, threads, wanted)
        agreement = photo_agreement(engines, photos)
        for batch_size in batch_sizes:
            say(f'  {name}, batch {batch_size}: {", ".join(engines)}')
            batch = np.random.default_rng(0).standard_normal(
                (batch_size, 3, img_size, img_size)).astype('float32')
            errors, failed = warm_up(engines, batch, warmup)
            working = {k: v for k, v in engines.items() if k not in failed}
            memory = ({k: (probe_memory(name, k, batch_size, img_size, threads) or {})
                       .get('run_mb') for k in working} if with_memory else {})
            times = interleaved_times(working, batch, rounds)
            speed = {k: batch_size / statistics.median(v) for k, v in times.items() if v}
            torch_speed = speed.get('torch eager')
            for engine_name in engines:
                rows.append({
                    'model': name, 'batch': batch_size, 'engine': engine_name,
                    'img_per_s': round(speed[engine_name], 2) if engine_name in speed else None,
                    'vs_torch_eager': (round(speed[engine_name] / torch_speed, 2)
                                       if torch_speed and engine_name in speed else None),
                    'rel_logit_error': errors.get(engine_name),
                    'top1_agreement_photos': agreement.get(engine_name),
                    'run_mb': memory.get(engine_name),
                    'error': failed.get(engine_name),
                })
    return rows


def cpu_name():
    try:
        with open('/proc/cpuinfo') as f:
            for line in f:
                if line.startswith('model name'):
                    return line.split(':', 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def format_table(rows):
    def cell(value, spec):
        return '-' if value is None else format(value, spec)
    lines = ['| model | batch | engine | img/s | vs torch eager | rel. logit error | '
             'top-1 agreement (photos) | memory per run (MB) |', '|---|---|---|---|---|---|---|---|']
    for r in rows:
        agree = cell(None if r['top1_agreement_photos'] is None else
                     100 * r['top1_agreement_photos'], '.1f')
        lines.append(f'| {r["model"]} | {r["batch"]} | {r["engine"]} | '
                     f'{cell(r["img_per_s"], ".1f")} | {cell(r["vs_torch_eager"], ".2f")}x | '
                     f'{cell(r["rel_logit_error"], ".1e")} | {agree}% | '
                     f'{cell(r["run_mb"], ".0f")} |'
                     + (f' failed: {r["error"]}'
                                                        if r['error'] else ''))
    return '\n'.join(lines)


def torch_version(threads):
    """PyTorch's version, its thread pool set to ``threads``; None without PyTorch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch.__version__


def environment(threads, photos, torch_version):
    env = {'date': datetime.date.today().isoformat(), 'cpu': cpu_name(), 'threads': threads,
           'paddle': paddle.__version__, 'bf16': cpu_supports_bf16(),
           'photos': None if photos is None else len(photos)}
    if torch_version:
        env['torch'] = torch_version
    return env


def headline(env):
    return (f'{env["date"]}, {env["cpu"]}, {env["threads"]} threads, Paddle {env["paddle"]}'
            + (f', PyTorch {env["torch"]}' if 'torch' in env else '')
            + (f'; top-1 agreement on {env["photos"]} photographs' if env['photos'] else ''))


def run_benchmark(models, batch_sizes, rounds, warmup, img_size, threads=None, engines=None,
                  with_memory=True, with_photos=True, json_path=None):
    """Measure, print the table, optionally write JSON; returns the result rows."""
    threads = threads or os.cpu_count() or 1
    torch_ver = torch_version(threads)
    photos = photo_batch(img_size) if with_photos else None
    rows = []
    for name in models:
        say(f'measuring {name} at batch {", ".join(map(str, batch_sizes))} '
            f'({rounds} rounds, {warmup} warm-up runs per engine) ...')
        rows += measure(get_config(name).name, batch_sizes, rounds, warmup, img_size, threads,
                        engines, photos, with_memory)
    env = environment(threads, photos, torch_ver)
    print(headline(env))
    print(format_table(rows))
    if json_path:
        with atomic_output(json_path) as tmp, open(tmp, 'w', encoding='utf-8') as f:
            json.dump({'environment': env, 'results': rows}, f, indent=2)
    return rows


if __name__ == '__main__':  # the memory probe's child process
    _name, _engine, _batch, _size, _threads = sys.argv[1].split(',')
    memory_probe(_name, _engine, int(_batch), int(_size), int(_threads))
