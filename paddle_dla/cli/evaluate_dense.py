"""``paddle-dla eval`` for the dense networks: a detector on a COCO annotation file
(pycocotools' box AP, as CenterNet's ``test.py`` scores it) and DLA-Up on Cityscapes val
(mIoU at each image's own resolution, as ``segment.py`` scores it). The data are checked
whole before the model runs; the metrics (and COCO results) are written once every image is
done, whole or not at all."""
import argparse
import os
import time

from ..core.errors import UsageError, printable
from ..inference.engines import AUTO, EAGER, OLD_ENGINE_NAMES
from ..models.dense_variants import get_dense_config
from ..models.registry import CLASSIFICATION, get_model

DETECTION, SEGMENTATION = 'detection', 'segmentation'


def wanted(args):
    """Whether ``eval`` is asked for a dense network (by its data options or its name)."""
    if args.coco_annotations or args.cityscapes:
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
    if args.coco_annotations and args.cityscapes:
        raise UsageError('give --coco-annotations or --cityscapes, not both')
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
    raise UsageError(f'{entry.name} is a {entry.task} network: eval scores classifiers, '
                     f'detectors (--coco-annotations) and segmentation (--cityscapes)')


def _runner(args, name):
    """(spec, run) as ``predict`` builds them: the model exported once into the cache (any
    input size where images run at their own) and run by --engine, or eager."""
    from .predict_dense import runner
    model_args = argparse.Namespace(
        model=name, weights=args.weights, tag=args.tag, exported=None, device='cpu',
        precision='fp32', engine=OLD_ENGINE_NAMES.get(args.engine, args.engine),
        keep_res=args.keep_res, flip_test=args.flip_test, save_json=None)
    return runner(model_args)


def run(args):
    from ..evaluation.metrics import distributed_rank
    name, task = _task_of(args)
    if args.flip_test or args.keep_res:
        if task != DETECTION:
            raise UsageError('--flip-test and --keep-res are CenterNet\'s test modes')
    rank, world = distributed_rank(quiet=not args.verbose)
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


def _rate_line(rates, engine):
    return (f'speed: {rates["end_to_end_img_per_s"]:.2f} img/s end to end, '
            f'{rates["model_img_per_s"]:.2f} img/s in the model alone '
            f'({100 * (rates["end_to_end_share"] or 0):.0f}%), engine {engine}')


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
    said = verdict(get_dense_config(name).published, args.weights, len(images), metrics['AP'],
                   args.flip_test, args.keep_res, args.tolerance)
    print(f'{name}: AP {metrics["AP"]:.1f} (box, COCOeval) on {len(images):,} images'
          + (' with the flip test' if args.flip_test else '') + f'; {said}')
    print(_rate_line(rates, _engine_name(timed, args)))
    if args.out:
        detections = results_path(args.out)
        write_json(detections, records, indent=None)
        write_json(args.out, {
            'model': name, 'weights': os.path.abspath(args.weights) if args.weights else None,
            'annotations': coco_set.path, 'images': len(images), 'flip_test': args.flip_test,
            'keep_res': args.keep_res, 'units': 'percent', **metrics, 'verdict': said,
            'results_file': os.path.abspath(detections), 'engine': _engine_name(timed, args),
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
    print(_rate_line(rates, _engine_name(timed, args)))
    if args.out:
        write_json(args.out, {
            'model': name, 'weights': os.path.abspath(args.weights) if args.weights else None,
            'data': os.path.abspath(args.cityscapes), 'images': len(pairs), 'units': 'percent',
            **matrix.as_dict(spec.class_names), 'engine': _engine_name(timed, args),
            **rates})
        print(f'metrics: {printable(args.out)}')
    return 0
