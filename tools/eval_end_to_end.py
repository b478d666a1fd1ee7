#!/usr/bin/env python
"""End-to-end evaluation throughput on real JPEGs against the model alone, side by side.

Makes an ILSVRC-style folder of JPEGs (scikit-image's photographs, cropped and resized to
ImageNet's typical 500x375) and a dla_34 with random weights, then takes turns, each in
its own process: ``paddle-dla eval`` with its default options; the same engine on the same
batch size without any decoding (the model-only rate); and ``paddle-dla eval --engine
eager`` (the old default) on fewer images. Prints each rate and the ratios between them.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)


def make_images(folder, count):
    import numpy as np
    import skimage
    from PIL import Image

    from paddle_dla.models.imagenet import synsets
    rng = np.random.default_rng(0)
    photos = []
    for name in sorted(os.listdir(skimage.data_dir)):
        if name.endswith(('.png', '.jpg')):
            image = Image.open(os.path.join(skimage.data_dir, name)).convert('RGB')
            if min(image.size) >= 200:
                photos.append(image)
    classes = synsets()
    for i in range(count):
        image = photos[i % len(photos)]
        w, h = image.size
        s = rng.uniform(0.6, 1.0)
        cw, ch = int(w * s), int(h * s)
        x, y = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        size = (500, 375) if cw >= ch else (375, 500)
        crop = image.crop((x, y, x + cw, y + ch)).resize(size, Image.BICUBIC)
        target = os.path.join(folder, classes[i % 10])
        os.makedirs(target, exist_ok=True)
        crop.save(os.path.join(target, f'ILSVRC2012_val_{i + 1:08d}.JPEG'), quality=90)


def make_weights(path, variant):
    import paddle

    from paddle_dla.benchmarking.runner import calibrated_model
    paddle.save(calibrated_model(variant).state_dict(), path)


def model_only(variant, weights, batch_size, batches, engine):
    """Images per second of the deployed model alone, as eval builds it (same cache)."""
    import numpy as np

    from paddle_dla.inference import compile_model
    from paddle_dla.zoo.factory import create_model
    model = create_model(variant, pretrained=weights)
    model.eval()
    predictor = compile_model(model, engine=engine)
    batch = np.random.default_rng(0).standard_normal((batch_size, 3, 224, 224)).astype('float32')
    predictor(batch)
    start = time.perf_counter()
    for _ in range(batches):
        predictor(batch)
    rate = batches * batch_size / (time.perf_counter() - start)
    print(json.dumps({'img_per_s': rate, 'engine': predictor.engine}))


def run_eval(variant, weights, data, results, extra):
    command = [sys.executable, '-m', 'paddle_dla', 'eval', '--model', variant, '--weights',
               weights, '--data-dir', data, '--no-progress', '--results-file', results] + extra
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f'eval failed: {proc.stderr.strip()[-500:]}')
    (row,) = json.load(open(results))
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', default='dla_34', help='variant (default: %(default)s)')
    p.add_argument('--images', type=int, default=640, help='JPEGs (default: %(default)s)')
    p.add_argument('--eager-images', type=int, default=128,
                   help='images for the eager run, which is slow (default: %(default)s)')
    p.add_argument('--rounds', type=int, default=2, help='turns of each (default: %(default)s)')
    p.add_argument('--model-only', nargs=4, metavar=('WEIGHTS', 'BATCH', 'BATCHES', 'ENGINE'),
                   help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.model_only:
        weights, batch, batches, engine = args.model_only
        return model_only(args.model, weights, int(batch), int(batches), engine)
    with tempfile.TemporaryDirectory() as work:
        os.environ['PADDLE_DLA_HOME'] = os.path.join(work, 'home')
        data, weights = os.path.join(work, 'val'), os.path.join(work, 'model.pdparams')
        print(f'making {args.images} JPEGs and {args.model} weights ...', file=sys.stderr)
        make_images(data, args.images)
        make_weights(weights, args.model)
        results = os.path.join(work, 'results.json')
        rates = {'eval (defaults)': [], 'model only': [], 'eval --engine eager': []}
        engine, batch_size, label = 'auto', 64, ''
        for r in range(args.rounds):
            row = run_eval(args.model, weights, data, results, [])
            rates['eval (defaults)'].append(row['images_per_sec'])
            label = row['engine']
            engine = label.split()[0].rstrip(',')
            proc = subprocess.run([sys.executable, __file__, '--model', args.model,
                                   '--model-only', weights, str(batch_size),
                                   str(max(2, args.images // batch_size)), engine],
                                  capture_output=True, text=True)
            if proc.returncode:
                raise SystemExit(f'model-only run failed: {proc.stderr.strip()[-500:]}')
            rates['model only'].append(json.loads(proc.stdout.strip().splitlines()[-1])[
                'img_per_s'])
            row = run_eval(args.model, weights, data, results,
                           ['--engine', 'eager', '--limit', str(args.eager_images)])
            rates['eval --engine eager'].append(row['images_per_sec'])
            print(f'round {r + 1}: ' + ', '.join(f'{k} {v[-1]:.1f} img/s'
                                                 for k, v in rates.items()), file=sys.stderr)
    from paddle_dla.core.machine import cpu_description
    cpu, cores, features = cpu_description()
    median = {k: statistics.median(v) for k, v in rates.items()}
    print(f'{time.strftime("%Y-%m-%d")}, {cpu} ({" ".join(features)}), {cores} cores; '
          f'{args.model}, batch {batch_size}, {args.images} JPEGs; eval ran: {label}')
    for k, v in median.items():
        print(f'  {k:<22} {v:7.1f} img/s (rounds: {", ".join(f"{x:.1f}" for x in rates[k])})')
    print(f'  end to end / model only: {median["eval (defaults)"] / median["model only"]:.2f}')
    print(f'  defaults / eager:        {median["eval (defaults)"] / median["eval --engine eager"]:.1f}x')


if __name__ == '__main__':
    main()
