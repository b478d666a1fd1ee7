#!/usr/bin/env python
"""How fast FairMOT tracks on this machine: the tracker's own time per frame at 10 and 100
tracks, and ``paddle-dla track`` end to end (reading, letterbox, network, decoding,
tracker, results) against its network alone, in frames per second.

The tracker runs in this process on synthetic pedestrians (tests' streams: jittered boxes,
128-number embeddings, 30 fps). ``paddle-dla track`` runs in its own process for each
engine, in alternating rounds, on 1920x1080 frames of a camera panning across a
photograph; a FairMOT with random weights unless --weights is given (the speed does not
depend on the weights). Prints the CPU, each figure and the end-to-end share of the
network-only rate."""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
sys.path.insert(0, REPO)


def crowd(people, frames, seed=0):
    """(detections, embeddings) per frame: ``people`` walking in a grid, boxes jittered by a
    pixel or two, each person's embedding near its own."""
    import numpy as np
    rng = np.random.default_rng(seed)
    columns = int(np.ceil(np.sqrt(people)))
    start = np.array([[60 + 180 * (i % columns), 40 + 100 * (i // columns)]
                      for i in range(people)], float)
    velocity = rng.uniform(-3, 3, (people, 2))
    looks = rng.normal(size=(people, 128))
    stream = []
    for t in range(frames):
        xy = start + velocity * t + rng.normal(0, 1.5, (people, 2))
        boxes = np.concatenate([xy, xy + [50, 140]], 1)
        scores = rng.uniform(0.5, 0.9, (people, 1))
        detections = np.concatenate([boxes, scores], 1).astype(np.float32)
        order = np.argsort(-detections[:, 4])
        features = (looks + 0.3 * rng.normal(size=looks.shape)).astype(np.float32)
        stream.append((detections[order], features[order]))
    return stream


def tracker_ms_per_frame(people, frames, rounds):
    from paddle_dla.tracking import JDETracker
    stream = crowd(people, frames)
    times = []
    for _ in range(rounds):
        tracker = JDETracker()
        start = time.perf_counter()
        for detections, embeddings in stream:
            tracks = tracker.update(detections, embeddings)
        times.append((time.perf_counter() - start) / frames * 1000)
    return statistics.median(times), len(tracks)


def make_frames(folder, count):
    import cv2
    import skimage
    scene = cv2.imread(os.path.join(skimage.data_dir, 'astronaut.png'))
    scene = cv2.resize(scene, (2600, 1500), interpolation=cv2.INTER_CUBIC)
    for t in range(count):
        frame = scene[100 + 4 * t:1180 + 4 * t, 60 + 16 * t:1980 + 16 * t]
        cv2.imwrite(os.path.join(folder, f'{t + 1:06d}.jpg'), frame)


def make_weights(path):
    import paddle

    import paddle_dla
    paddle.save(paddle_dla.create_model('fairmot_dla34').state_dict(), path)


SPEED = re.compile(r'speed: ([0-9.]+) frames/s end to end, ([0-9.]+) frames/s in the model')


def track_once(frames, weights, engine, out):
    proc = subprocess.run([sys.executable, '-m', 'paddle_dla', 'track', frames, '--model',
                           'fairmot_dla34', '--weights', weights, '--engine', engine,
                           '--out', out, '--no-progress'], capture_output=True, text=True,
                          cwd=REPO)
    if proc.returncode != 0:
        sys.exit(f'paddle-dla track --engine {engine} failed: {proc.stderr.strip()}')
    found = SPEED.search(proc.stdout)
    return float(found.group(1)), float(found.group(2))


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--engines',
                        help='comma list of engines for paddle-dla track (default: every '
                             'engine installed here)')
    parser.add_argument('--frames', type=int, default=20,
                        help='1920x1080 frames tracked a round (default: %(default)s)')
    parser.add_argument('--rounds', type=int, default=2, help='rounds (default: %(default)s)')
    parser.add_argument('--weights', help='a FairMOT .pth/.pdparams (default: random)')
    args = parser.parse_args()
    from paddle_dla.core.machine import cpu_description
    from paddle_dla.inference.runtimes import installed_engines
    cpu, cores, features = cpu_description()
    print(f'{time.strftime("%Y-%m-%d")}, {cpu} ({" ".join(features)}), {cores} cores')
    for people in (10, 100):
        ms, tracks = tracker_ms_per_frame(people, 150, 3)
        print(f'tracker alone, {people} people: {ms:.2f} ms a frame ({tracks} tracks at the '
              f'end)')
    with tempfile.TemporaryDirectory() as work:
        frames = os.path.join(work, 'frames')
        os.mkdir(frames)
        make_frames(frames, args.frames)
        weights = args.weights or os.path.join(work, 'fairmot.pdparams')
        if not args.weights:
            make_weights(weights)
        engines = ([e.strip() for e in args.engines.split(',') if e.strip()] if args.engines
                   else list(installed_engines('cpu', 'fp32')))
        results = {e: [] for e in engines}
        for engine in engines:   # exported once into the cache, outside the rounds
            track_once(frames, weights, engine, os.path.join(work, 'warm.txt'))
        for _ in range(args.rounds):
            for engine in engines:
                results[engine].append(track_once(frames, weights, engine,
                                                  os.path.join(work, f'{engine}.txt')))
    for engine, runs in results.items():
        end = statistics.median(r[0] for r in runs)
        model = statistics.median(r[1] for r in runs)
        print(f'paddle-dla track --engine {engine}: {end:.2f} frames/s end to end, '
              f'{model:.2f} frames/s in the network alone ({100 * end / model:.0f}%), '
              f'1920x1080 frames, input 1088x608')


if __name__ == '__main__':
    main()
