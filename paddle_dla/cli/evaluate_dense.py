"""``paddle-dla eval`` for the dense networks: a detector on a COCO annotation file
(pycocotools' box AP, as CenterNet's ``test.py`` scores it) and DLA-Up on Cityscapes val
(mIoU at each image's own resolution, as ``segment.py`` scores it). The data are checked
whole before the model runs; the metrics (and COCO results) are written once every image is
done, whole or not at all."""
import argparse
import os
import time

from ..core.errors import UsageError, printable
from ..inference.engines import AUTO, EAGER, INT8, OLD_ENGINE_NAMES
from ..models.dense_variants import get_dense_config
from ..models.registry import CLASSIFICATION, get_model

DETECTION, SEGMENTATION, TRACKING = 'detection', 'segmentation', 'tracking'


def wanted(args):
    """Whether ``eval`` is asked for a dense network (by its data options or its name)."""
    if args.coco_annotations or args.cityscapes or args.mot_dir:
        return True
    if args.task not in (None, CLASSIFICATION):
        return True
    return len(args.model) == 1 and get_model(args.model[0]).task != CLASSIFICATION


def results_path(metrics_path):
    """The COCO results file written beside ``--out``: ``metrics.json`` ->
    ``metrics.detections.json``."""
    stem, _ = os.path.splitext(metrics_path)
    return stem + '.detections.json'


class TimedRun:
    """A model callable that counts the seconds spent in it: the model-only rate."""

    def __init__(self, run):
        self.run, self.seconds = run, 0.0
        self.meta = getattr(run, 'meta', None)

    @property
    def engine(self):
        """The engine that ran (with 'auto', known once the first image has run)."""
        return getattr(self.run, 'engine', EAGER)

    def __call__(self, batch):
        start = time.perf_counter()
        try:
            return self.run(batch)
        finally:
            self.seconds += time.perf_counter() - start


def _task_of(args):
    """(model name, task) after checking that the data options fit the model."""
    if len(args.model) != 1:
        raise UsageError('a dense network is evaluated one at a time: give one --model')
    entry = get_model(args.model[0])
    given = [o for o in ('coco_annotations', 'cityscapes', 'mot_dir') if getattr(args, o)]
    if len(given) > 1:
        raise UsageError(f'give one of --coco-annotations, --cityscapes and --mot-dir, not '
                         f'{" and ".join("--" + o.replace("_", "-") for o in given)}')
    if args.task and args.task != entry.task:
        raise UsageError(f'--task {args.task}: {entry.name} is a {entry.task} network')
    if args.mot_dir:
        if entry.task != TRACKING:
            raise UsageError(f'--mot-dir scores a tracker such as fairmot_dla34, not '
                             f'{entry.name} ({entry.task})')
        return entry.name, TRACKING
    if args.coco_annotations:
        if entry.task != DETECTION:
            raise UsageError(f'--coco-annotations scores a detector such as centernet_dla34, '
                             f'not {entry.name} ({entry.task})')
        if not args.images:
            raise UsageError('--coco-annotations needs --images DIR, the folder of its images')
        return entry.name, DETECTION
    if args.cityscapes:
        if entry.task != SEGMENTATION:
            raise UsageError(f'--cityscapes scores a segmentation network such as dla34up, '
                             f'not {entry.name} ({entry.task})')
        return entry.name, SEGMENTATION
    if entry.task == DETECTION:
        raise UsageError(f'{entry.name} is evaluated with --coco-annotations FILE --images DIR')
    if entry.task == SEGMENTATION:
        raise UsageError(f'{entry.name} is evaluated with --cityscapes DIR')
    if entry.task == TRACKING:
        raise UsageError(f'{entry.name} is evaluated with --mot-dir DIR')
    raise UsageError(f'{entry.name} is a {entry.task} network: eval scores classifiers, '
                     f'detectors (--coco-annotations) and segmentation (--cityscapes)')


def _runner(args, name):
    """(spec, run) as ``predict`` builds them: the model exported once into the cache (any
    input size where images run at their own) and run by --engine, or eager."""
    from .predict_dense import runner
    from .quantize import calibration_files
    model_args = argparse.Namespace(
        model=name, weights=args.weights, tag=args.tag, exported=None, device='cpu',
        precision=args.precision, engine=OLD_ENGINE_NAMES.get(args.engine, args.engine),
        keep_res=args.keep_res, flip_test=args.flip_test, save_json=None,
        input_size=args.input_size)
    files = None
    if args.precision == INT8:
        folder, option = calibration_folder(args)
        files = calibration_files(folder, args.calib_count, option)
    return runner(model_args, files)


def calibration_folder(args):
    """(folder, the option naming it) INT8 is calibrated on: --calib-dir, else the
    evaluation's own images (Cityscapes' label PNGs are not images of the scene)."""
    if args.calib_dir:
        return args.calib_dir, '--calib-dir'
    if args.coco_annotations:
        return args.images, '--images'
    if args.cityscapes:
        return os.path.join(args.cityscapes, 'leftImg8bit'), '--cityscapes'
    return args.mot_dir, '--mot-dir'


def run(args):
    from ..evaluation.metrics import distributed_rank
    name, task = _task_of(args)
    if args.flip_test or args.keep_res:
        if task != DETECTION:
            raise UsageError('--flip-test and --keep-res are CenterNet\'s test modes')
    if args.results_dir and task != TRACKING:
        raise UsageError('--results-dir keeps tracking results, with --mot-dir')
    from .predict_dense import check_input_size
    check_input_size(name, args.input_size, args.keep_res)
    rank, world = distributed_rank(quiet=not args.verbose)
    if task == TRACKING:
        return _mot(args, name, rank, world)
    if task == DETECTION:
        return _coco(args, name, rank, world)
    return _cityscapes(args, name, rank, world)


def _gather(value, world):
    """Every rank's ``value``, in rank order."""
    if world == 1:
        return [value]
    import paddle.distributed as dist
    parts = []
    dist.all_gather_object(parts, value)
    return parts


def _loop(items, step, label, rank, world, args):
    """``step(item)`` for this rank's share of ``items`` with a progress bar; returns (the
    results, wall seconds)."""
    from ..evaluation.runner import progress_bar
    shard = items[rank::world]
    bar = progress_bar(len(shard), f'{label} [{rank}/{world}]' if world > 1 else label,
                       enabled=rank == 0 and not args.no_progress)
    out, start = [], time.perf_counter()
    try:
        for item in shard:
            out.append(step(item))
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    return out, time.perf_counter() - start


def _rates(parts):
    """End-to-end and model-only images per second, summed over the ranks."""
    end_to_end = sum(p['images'] / p['wall'] for p in parts if p['wall'] > 0)
    model = sum(p['images'] / p['model'] for p in parts if p['model'] > 0)
    return {'end_to_end_img_per_s': round(end_to_end, 3), 'model_img_per_s': round(model, 3),
            'end_to_end_share': round(end_to_end / model, 3) if model else None}


def _engine_name(timed, args):
    """What ran the model, as the classification report says it."""
    return timed.engine + (f' ({AUTO})' if args.engine == AUTO else '')


def _rate_line(rates, engine, precision='fp32'):
    return (f'speed: {rates["end_to_end_img_per_s"]:.2f} img/s end to end, '
            f'{rates["model_img_per_s"]:.2f} img/s in the model alone '
            f'({100 * (rates["end_to_end_share"] or 0):.0f}%), engine {engine}'
            + (f', {precision}' if precision != 'fp32' else ''))


def _warm_up(run_one, first):
    """The first image once before the clock starts: 'auto' picks its engine on it and the
    engines build their kernels, as the classification harness warms up."""
    run_one(first)


def _coco(args, name, rank, world):
    from ..core.atomic import write_json
    from ..evaluation.coco import as_metrics, coco_evaluate, read_annotations, verdict
    from ..tasks.coco import CENTERNET_DECIMALS, category_ids_of, coco_records
    from ..tasks.serving import run_dense
    coco_set = read_annotations(args.coco_annotations, args.images)
    images = coco_set.images[:args.limit] if args.limit else coco_set.images
    spec, run = _runner(args, name)
    categories = category_ids_of(spec.class_names, None)
    coco_set.check_categories(categories)
    timed = TimedRun(run)
    if rank == 0:
        print(f'data: {len(images):,} of the {len(coco_set.images):,} images of '
              f'{printable(coco_set.path)}, in {printable(os.path.abspath(args.images))}',
              flush=True)

    def detect(image):
        result = run_dense(spec, timed, image.path, flip_test=args.flip_test,
                           keep_res=args.keep_res)
        return coco_records(result.detections, image.id, categories, 0.0,
                            decimals=CENTERNET_DECIMALS)

    _warm_up(detect, images[0])
    timed.seconds = 0.0
    found, wall = _loop(images, detect, name, rank, world, args)
    parts = _gather({'records': [r for rs in found for r in rs], 'images': len(found),
                     'wall': wall, 'model': timed.seconds}, world)
    if rank != 0:
        return 0
    records = [r for part in parts for r in part['records']]
    stats, summary = coco_evaluate(coco_set, records, [image.id for image in images])
    print(summary, end='')
    metrics = as_metrics(stats)
    rates = _rates(parts)
    recipe = get_dense_config(name).input
    size = (spec.input.height, spec.input.width)
    said = verdict(get_dense_config(name).published, args.weights, len(images), metrics['AP'],
                   args.flip_test, args.keep_res, args.tolerance,
                   size != (recipe.height, recipe.width) and recipe)
    print(f'{name}: AP {metrics["AP"]:.1f} (box, COCOeval) on {len(images):,} images'
          + (' with the flip test' if args.flip_test else '') + f'; {said}')
    print(_rate_line(rates, _engine_name(timed, args), args.precision))
    if args.out:
        detections = results_path(args.out)
        write_json(detections, records, indent=None)
        write_json(args.out, {
            'model': name, 'weights': os.path.abspath(args.weights) if args.weights else None,
            'annotations': coco_set.path, 'images': len(images), 'flip_test': args.flip_test,
            'keep_res': args.keep_res,
            'input_size': None if args.keep_res else f'{size[1]}x{size[0]}',
            'units': 'percent', **metrics, 'verdict': said,
            'results_file': os.path.abspath(detections), 'engine': _engine_name(timed, args),
            'precision': args.precision,
            **rates})
        print(f'metrics: {printable(args.out)}; detections: {printable(detections)}')
    return 1 if (args.strict and said == 'FAIL') else 0


def _cityscapes(args, name, rank, world):
    from ..core.atomic import write_json
    from ..evaluation.segmentation import (ConfusionMatrix, check_label_sizes,
                                           evaluate_segmentation, find_cityscapes, format_iou_table)
    from ..tasks.serving import run_dense
    pairs = find_cityscapes(args.cityscapes)
    pairs = pairs[:args.limit] if args.limit else pairs
    check_label_sizes(pairs)
    spec, run = _runner(args, name)
    if spec.class_names and len(spec.class_names) != 19:
        raise UsageError(f'{name} has {len(spec.class_names)} classes; Cityscapes is scored '
                         f'over 19')
    timed = TimedRun(run)
    if rank == 0:
        print(f'data: {len(pairs):,} images with labels in '
              f'{printable(os.path.abspath(args.cityscapes))}', flush=True)

    def segment(path):
        return run_dense(spec, timed, path).classes

    _warm_up(segment, pairs[0][0])
    timed.seconds = 0.0
    matrices, wall = _loop(pairs, lambda pair: evaluate_segmentation(segment, [pair]),
                           name, rank, world, args)
    parts = _gather({'matrix': ConfusionMatrix.merge(matrices) if matrices else None,
                     'images': len(matrices), 'wall': wall, 'model': timed.seconds}, world)
    if rank != 0:
        return 0
    matrix = ConfusionMatrix.merge([p['matrix'] for p in parts if p['matrix'] is not None])
    print(format_iou_table(matrix, spec.class_names))
    rates = _rates(parts)
    print(f'{name}: mIoU {100 * matrix.miou():.2f} over 19 classes on {len(pairs):,} images '
          f'at their own resolution; no verdict: no published weights')
    print(_rate_line(rates, _engine_name(timed, args), args.precision))
    if args.out:
        write_json(args.out, {
            'model': name, 'weights': os.path.abspath(args.weights) if args.weights else None,
            'data': os.path.abspath(args.cityscapes), 'images': len(pairs), 'units': 'percent',
            **matrix.as_dict(spec.class_names), 'engine': _engine_name(timed, args),
            'precision': args.precision,
            **rates})
        print(f'metrics: {printable(args.out)}')
    return 0


def _tracks_dir(args):
    if args.results_dir:
        return args.results_dir
    return os.path.splitext(args.out)[0] + '.tracks' if args.out else 'tracks'


def _mot(args, name, rank, world):
    """FairMOT over every sequence (``seqinfo.ini``'s frame rate), scored by motmetrics;
    sequences are shared out over --nproc processes, each tracked whole by one."""
    from ..core.atomic import atomic_folder_output, write_json
    from ..evaluation.mot import accumulate, as_metrics, find_sequences, summarise
    from ..evaluation.runner import progress_bar
    from ..tracking.frames import open_frames
    from ..tracking.motchallenge import read_mot_file, result_lines
    from ..tracking.pipeline import track_frames
    sequences = find_sequences(args.mot_dir)
    frames = {s.name: open_frames(s.frames_dir) for s in sequences}   # checked before any run
    spec, run = _runner(args, name)
    timed = TimedRun(run)
    total = sum(len(f) for f in frames.values())
    if rank == 0:
        print(f'data: {len(sequences)} sequences, {total:,} frames in '
              f'{printable(os.path.abspath(args.mot_dir))}', flush=True)
    mine = sequences[rank::world]
    bar = progress_bar(sum(len(frames[s.name]) for s in mine), name,
                       enabled=rank == 0 and not args.no_progress, unit='frame')
    texts, start = {}, time.perf_counter()
    try:
        for sequence in mine:
            lines = []
            for frame in track_frames(spec, timed, frames[sequence.name], sequence.frame_rate):
                lines.append(result_lines(frame.number, frame.tracks))
                if bar is not None:
                    bar.update(1)
            texts[sequence.name] = ''.join(lines)
    finally:
        if bar is not None:
            bar.close()
    wall = time.perf_counter() - start
    parts = _gather({'texts': texts, 'images': sum(len(frames[s.name]) for s in mine),
                     'wall': wall, 'model': timed.seconds}, world)
    if rank != 0:
        return 0
    texts = {k: v for part in parts for k, v in part['texts'].items()}
    folder = _tracks_dir(args)
    published = get_dense_config(name).published
    found = {s.name: s for s in sequences}
    # The published protocol's list, where these are its sequences (one scored twice).
    listed = (list(published.sequences) if set(found) == set(published.sequences)
              else [s.name for s in sequences])
    with atomic_folder_output(folder) as tmp:
        for sequence in sequences:
            with open(os.path.join(tmp, sequence.name + '.txt'), 'w', encoding='utf-8') as f:
                f.write(texts[sequence.name])
        results = {n: read_mot_file(os.path.join(tmp, n + '.txt')) for n in found}
        accumulators = [accumulate(found[n], results[n]) for n in listed]
        summary, table = summarise(accumulators, _unique(listed))
    print(table)
    metrics = as_metrics(summary)
    overall = metrics['OVERALL']
    rates = _rates(parts)
    recipe = get_dense_config(name).input
    size = args.input_size or (recipe.height, recipe.width)
    said = _mot_verdict(published, args.weights, listed, overall['mota'],
                        size != (recipe.height, recipe.width) and recipe)
    print(f'{name}: MOTA {_percent(overall["mota"])}, IDF1 {_percent(overall["idf1"])}, '
          f'{overall["num_switches"]} ID switches over {len(sequences)} sequences; {said}')
    print(_rate_line(rates, _engine_name(timed, args), args.precision)
          .replace('img/s', 'frames/s'))
    print(f'results: {printable(folder)}')
    if args.out:
        write_json(args.out, {
            'model': name, 'weights': os.path.abspath(args.weights) if args.weights else None,
            'data': os.path.abspath(args.mot_dir), 'frames': total, 'units': 'percent',
            'input_size': f'{size[1]}x{size[0]}',
            'sequences': metrics, 'verdict': said, 'results_dir': os.path.abspath(folder),
            'engine': _engine_name(timed, args), 'precision': args.precision,
            **{k.replace('img', 'frames'): v for k, v in rates.items()}})
        print(f'metrics: {printable(args.out)}')
    return 1 if (args.strict and said == 'FAIL') else 0


def _percent(value):
    return 'undefined' if value is None else f'{value:.1f}%'


def _unique(names):
    """Table row names: a sequence listed again is shown as 'NAME (2)'."""
    seen, out = {}, []
    for n in names:
        seen[n] = seen.get(n, 0) + 1
        out.append(n if seen[n] == 1 else f'{n} ({seen[n]})')
    return out


def _mot_verdict(published, weights, listed, mota, resized_from=None, tolerance=0.5):
    """Against FairMOT's published 2DMOT15 validation MOTA only for the official checkpoint
    (by file name) on that validation split (by sequence names), at FairMOT's own input
    (``resized_from``: the recipe it was published at, when --input-size changed it)."""
    if not weights:
        return 'no verdict: no published weights evaluated'
    stem = os.path.splitext(os.path.basename(weights))[0]
    if stem != published.checkpoint:
        return f'no verdict: the published numbers are for {published.checkpoint}.pth'
    if resized_from:
        return (f'no verdict: the published {published.mota} MOTA is at '
                f'{resized_from.width}x{resized_from.height} input')
    if listed != list(published.sequences):
        return (f'no verdict: the published {published.mota} MOTA is for the '
                f'{published.dataset} sequences ({", ".join(sorted(set(published.sequences)))})')
    if mota is None:
        return 'FAIL: MOTA undefined'
    delta = mota - published.mota
    return (f'{"PASS" if abs(delta) <= tolerance else "FAIL"}: published {published.mota} '
            f'MOTA on {published.dataset}, delta {delta:+.2f}')
