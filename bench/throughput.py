#!/usr/bin/env python
"""Images per second of DLA on this machine, every engine measured side by side in one
process with their runs interleaved: Paddle eager, Paddle Inference fp32 and bf16, and
(when installed) timm's PyTorch model in eager and channels-last modes. Ratios are to
PyTorch eager from the same run; logit errors are against Paddle eager fp32. Memory is
measured for each engine alone, in a child process: how much one run grows the resident
memory (activations, workspaces, caches).

    python bench/throughput.py --models dla_34,dla_60,dla_102 --batch-sizes 1,8,32
    python bench/throughput.py --quick          # one small variant, one iteration (CI)
"""
import argparse
import datetime
import glob
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

# Paddle 2.6 crashes if torch is imported after it (their bundled zlib builds clash); this
# tool uses PyTorch when it is installed, so it imports it first.
try:
    import torch  # noqa: F401
except ImportError:
    pass

try:
    import paddle_dla  # noqa: F401
except ImportError:  # running from a source checkout that is not installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import paddle  # noqa: E402

import paddle_dla  # noqa: E402
from paddle_dla.atomic import atomic_output  # noqa: E402
from paddle_dla.cli_args import (ArgumentParser, image_size, non_negative_int,  # noqa: E402
                                 positive_int)
from paddle_dla.errors import exit_cleanly_on_sigterm  # noqa: E402
from paddle_dla.layers import BN_MOMENTUM  # noqa: E402
from paddle_dla.evaluation.transforms import Preprocess  # noqa: E402
from paddle_dla.preprocessing import DEFAULT as DEFAULT_PREPROCESSING  # noqa: E402
from paddle_dla.convert.verify import timm_available, timm_holding, torch_predictor  # noqa: E402
from paddle_dla.dla import eager_predictor  # noqa: E402
from paddle_dla.inference import Predictor, cpu_supports_bf16, export  # noqa: E402


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
    import subprocess
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), '--memory-probe',
                           f'{name},{engine_name},{batch_size},{img_size},{threads}'],
                          capture_output=True, text=True, timeout=600)
    try:
        return json.loads(proc.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return None


def calibrated_model(name, seed=0):
    """Random weights whose BN statistics fit random images, so activations keep their
    scale through the network. (No trained weights are needed to measure speed; the
    photograph agreement column is therefore only a proxy for trained weights.)"""
    paddle.seed(seed)
    model = paddle_dla.create_model(name)
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


def _variants(text):
    try:
        return ','.join(paddle_dla.get_config(n.strip()).name for n in text.split(',') if n.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _batch_sizes(text):
    return ','.join(str(positive_int(n)) for n in text.split(','))


def build_parser():
    parser = ArgumentParser(prog='throughput.py', description=__doc__.split('\n\n')[0],
                            formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--models', default='dla_34', type=_variants,
                        help='comma list of variants')
    parser.add_argument('--batch-sizes', default='1,8,32', type=_batch_sizes,
                        help='comma list of batch sizes')
    parser.add_argument('--img-size', type=image_size, default=DEFAULT_PREPROCESSING.img_size,
                        help='input size')
    parser.add_argument('--rounds', type=positive_int, default=5, help='timed runs per engine')
    parser.add_argument('--warmup', type=non_negative_int, default=2,
                        help='untimed runs per engine')
    parser.add_argument('--threads', type=positive_int, default=None,
                        help='CPU threads (default: all)')
    parser.add_argument('--engines', help='comma list to restrict the engines')
    parser.add_argument('--json', help='write the results here')
    parser.add_argument('--no-memory', action='store_true',
                        help='skip the per-engine memory probes (a child process each)')
    parser.add_argument('--quick', action='store_true',
                        help='dla_46_c, batch 1, one timed run: a smoke test')
    parser.add_argument('--memory-probe', help=argparse.SUPPRESS)
    return parser


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


def main(argv=None):
    exit_cleanly_on_sigterm()
    args = build_parser().parse_args(argv)
    if args.memory_probe:
        name, engine_name, batch_size, img_size, threads = args.memory_probe.split(',')
        memory_probe(name, engine_name, int(batch_size), int(img_size), int(threads))
        return 0
    if args.quick:
        args.models, args.batch_sizes, args.rounds, args.warmup = 'dla_46_c', '1', 1, 0
    threads = args.threads or os.cpu_count() or 1
    torch_ver = torch_version(threads)
    wanted = set(args.engines.split(',')) if args.engines else None
    photos = None if args.quick else photo_batch(args.img_size)
    rows = []
    for name in args.models.split(','):
        rows += measure(paddle_dla.get_config(name).name,
                        [int(b) for b in args.batch_sizes.split(',')], args.rounds, args.warmup,
                        args.img_size, threads, wanted, photos, not args.no_memory)
    env = environment(threads, photos, torch_ver)
    print(headline(env))
    print(format_table(rows))
    if args.json:
        with atomic_output(args.json) as tmp, open(tmp, 'w', encoding='utf-8') as f:
            json.dump({'environment': env, 'results': rows}, f, indent=2)
    return 0


if __name__ == '__main__':
    sys.exit(main())
