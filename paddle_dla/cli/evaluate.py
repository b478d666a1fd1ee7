"""``paddle-dla eval`` (and ``tools/imagenet_val.py``): top-1/top-5 of DLA models on
ILSVRC2012 val, against the published numbers when the weights are the published ones;
also under ``paddle.distributed.launch``."""
import argparse
import filecmp
import os
import shutil
import signal
import sys
import tempfile
import time

from ..core import SOURCE_ROOT
from ..core.digests import FULL, PREFIX, file_digests
from ..core.errors import Terminated, UsageError
from ..evaluation.dataset import LABEL_FILE_NAMES, find_samples
from ..evaluation.metrics import distributed_rank
from ..evaluation.report import decoding_split, format_table, result_row, write_results
from ..evaluation.runner import CORES_PER_WORKER, MAX_DEFAULT_WORKERS, default_workers
from ..evaluation.transforms import BACKENDS, MAX_RESIZED_PIXELS, ImageReadError, Preprocess
from ..inference.engines import (AUTO, DEFAULT_CALIBRATION_IMAGES, EAGER, ENGINES, INT8,
                                 INT8_ENGINE, MIN_CALIBRATION_IMAGES, OLD_ENGINE_NAMES,
                                 RUN_CHOICES)
from ..models.preprocessing import DEFAULT as DEFAULT_PREPROCESSING
from ..models.preprocessing import INPUT_SIZE_RANGE, INTERPOLATIONS
from ..models.registry import CLASSIFICATION, get_model
from ..weights.cache import cached_weights_path
from ..weights.registry import DEFAULT_TAG, WEIGHTS, get_weights, list_weights
from . import common
from .args import (calibration_count, float_range, image_size, int_range, output_file,
                   path_text, positive_int, variant_list)

HELP = ('top-1/top-5 on ILSVRC2012 val against the published numbers; COCO box AP; '
        'Cityscapes mIoU')
DESCRIPTION = ('Evaluate DLA models on the ILSVRC2012 validation set and compare top-1/'
               'top-5 with the published numbers (PASS/FAIL within --tolerance). Weights '
               'other than the published ones (--weights) get their numbers only. A '
               'detector is scored on a COCO annotation file with pycocotools, DLA-Up on '
               'Cityscapes val by mIoU.')
EPILOG = f"""\
examples:
  # one model, published weights (downloaded and cached on first use)
  paddle-dla eval --model dla_60 --data-dir /data/imagenet/val
  # the whole table, results in timm's CSV schema
  paddle-dla eval --model all --data-dir /data/imagenet/val --results-file dla.csv
  # your converted weights, checked image by image against timm's PyTorch model
  paddle-dla eval --model dla_34 --weights dla_34.pdparams --data-dir val \\
      --compare-torch --limit 2000
  # several processes or GPUs: every image is counted exactly once
  paddle-dla eval --nproc 8 --model all --data-dir /data/imagenet/val
  # CenterNet on COCO val2017: pycocotools' box AP, with the flip test
  paddle-dla eval --model centernet_dla34 --weights ctdet_coco_dla_2x.pth \
      --coco-annotations annotations/instances_val2017.json --images val2017 \
      --flip-test --out metrics.json
  # DLA-Up on Cityscapes val at full resolution: mIoU over 19 classes
  paddle-dla eval --model dla34up --weights model_best.pth.tar --cityscapes /data/cityscapes

data layouts (recognised automatically): synset folders (val/n01440764/*.JPEG); a flat
folder plus a list file ("ILSVRC2012_val_00000001.JPEG 65" per line, labels in sorted-synset
order); a flat folder plus Kaggle's LOC_val_solution.csv.
label files: without --label-file and without synset folders, the first of
  {", ".join(LABEL_FILE_NAMES)}
found in --data-dir, then in its parent folder; a .csv is read as Kaggle's, any other file
as a list. The report names the file read, with its path.
"""


# Each worker is a fork of this process that keeps two batches decoded ahead: far more
# workers than cores exhaust memory without decoding any faster.
MAX_WORKERS = 256
EVAL_ENGINES = RUN_CHOICES + tuple(OLD_ENGINE_NAMES)
EVAL_PRECISIONS = ('fp32', 'bf16', INT8)


def eval_models(text):
    """An argparse type: classifiers as ``variant_list`` reads them, or one dense network."""
    try:
        return variant_list(text)
    except argparse.ArgumentTypeError:
        try:
            entry = get_model(text.strip())
        except ValueError:
            entry = None
        if entry is None or entry.task == CLASSIFICATION:
            raise
        return [entry.name]


def configure(p):
    p.add_argument('--model', required=True, type=eval_models,
                   help='variant (dla_34, ...), a comma list of variants, or "all"; or one '
                        'dense network: a detector with --coco-annotations, DLA-Up with '
                        '--cityscapes')
    p.add_argument('--data-dir', help='ImageNet validation images, see layouts below '
                                      '(required for classifiers)')
    p.add_argument('--label-file', help='list file or LOC_val_solution.csv (default: synset '
                                        'folders, or the label file found in --data-dir or its '
                                        'parent, see below)')
    p.add_argument('--weights', help='.pdparams/.pth/.safetensors file, evaluated without the '
                                     'published comparison unless it is a published file '
                                     '(default: the published weights of --tag, from the cache '
                                     'or downloaded)')
    p.add_argument('--tag', default=DEFAULT_TAG, choices=sorted({t for _, t in WEIGHTS}),
                   help='published weights loaded and compared with their published numbers '
                        'unless --weights is given (default: %(default)s)')
    p.add_argument('--batch-size', type=positive_int, default=64,
                   help='images per forward pass (default: %(default)s)')
    p.add_argument('--workers', type=int_range(0, MAX_WORKERS, what='a number of processes'),
                   default=default_workers(),
                   help=f'image decoding processes, 0 to {MAX_WORKERS}; 0: the main process '
                        f'decodes between batches (default: one per {CORES_PER_WORKER} cores, at '
                        f'most {MAX_DEFAULT_WORKERS}, so 0 below {CORES_PER_WORKER} cores, where '
                        f'workers would take CPU time from the model; here %(default)s)')
    p.add_argument('--limit', type=positive_int,
                   help='only the first N images, sorted by file name (default: all)')
    p.add_argument('--engine', choices=EVAL_ENGINES, default=AUTO,
                   help=f'{AUTO}: exported once (cached) and run by the fastest installed '
                        f'engine here, measured on first use and remembered; '
                        f'{", ".join(ENGINES)}: that engine; {EAGER}: the Paddle model as is, '
                        f'the slow reference ('
                        + ', '.join(f'{old}: an older name of {new}'
                                    for old, new in OLD_ENGINE_NAMES.items())
                        + ') (default: %(default)s)')
    p.add_argument('--precision', choices=EVAL_PRECISIONS, default='fp32',
                   help='fp32; bf16 (CPUs with AVX512-BF16 or AMX); int8: quantized once by '
                        'paddle-dla quantize\'s route on --calib-dir, cached by weights, '
                        'calibration images and size, run by OpenVINO (default: %(default)s)')
    p.add_argument('--calib-dir', metavar='DIR', type=path_text,
                   help='int8: calibration images (default: the evaluation\'s own, spread '
                        'evenly over them)')
    p.add_argument('--calib-count', type=calibration_count, metavar='N',
                   help=f'int8: calibration images used, at least {MIN_CALIBRATION_IMAGES} '
                        f'(default: {DEFAULT_CALIBRATION_IMAGES})')
    p.add_argument('--threads', type=positive_int,
                   help='CPU threads of the model (default: every core; the decoding workers '
                        'run at a lower priority in the time the model leaves)')
    p.add_argument('--backend', choices=BACKENDS, default='pil',
                   help='image decoding and resizing; pil is the reference protocol, cv2 is '
                        'for comparison only (it scores 0.3-1.7 points lower) '
                        '(default: %(default)s)')
    p.add_argument('--img-size', type=image_size,
                   help=f'crop size in pixels, {INPUT_SIZE_RANGE} (default: the weights\' own, '
                        f'{DEFAULT_PREPROCESSING.img_size})')
    p.add_argument('--crop-pct', type=float_range(0, 1, low_open=True, what='a fraction'),
                   help=f'in (0, 1]: resize = floor(img_size / crop_pct) (default: the '
                        f'weights\' own, {DEFAULT_PREPROCESSING.crop_pct})')
    p.add_argument('--interpolation', choices=INTERPOLATIONS,
                   help=f'resize filter (default: the weights\' own, '
                        f'{DEFAULT_PREPROCESSING.interpolation})')
    p.add_argument('--tolerance', type=float_range(0, 100, what='a number of points'),
                   default=0.1,
                   help='allowed |delta| of top-1 and top-5, in points (default: %(default)s)')
    p.add_argument('--results-file', type=output_file,
                   help='write results as .json or .csv, JSON unless the name ends in .csv '
                        '(default: printed only)')
    p.add_argument('--compare-torch', action='store_true',
                   help='also run timm\'s PyTorch model with the same weights on the same '
                        'batches and report agreement, needs torch and timm (default: off)')
    p.add_argument('--skip-bad', action='store_true',
                   help='count and list unreadable images instead of stopping, no verdict then '
                        '(default: stop at the first)')
    p.add_argument('--strict', action='store_true', help='exit 1 on a FAIL verdict (default: exit 0 whatever the verdict)')
    p.add_argument('--nproc', type=int_range(1, 1024, what='a number of processes'), default=1,
                   help='shard the images over N processes (one per GPU on GPUs) started by '
                        'paddle.distributed.launch; every image is counted once (default: '
                        '%(default)s, this process)')
    p.add_argument('--no-progress', action='store_true',
                   help='no progress bar (default: a bar on stderr)')
    dense = p.add_argument_group('dense networks')
    dense.add_argument('--coco-annotations', metavar='FILE',
                       help='COCO annotation file (instances_val2017.json): box AP of a '
                            'detector through pycocotools\' COCOeval, as CenterNet\'s test.py '
                            'scores it (default: none)')
    dense.add_argument('--images', metavar='DIR',
                       help='the folder of the annotation file\'s images (default: none)')
    dense.add_argument('--cityscapes', metavar='DIR',
                       help='Cityscapes: segment.py\'s val_images.txt/val_labels.txt, or the '
                            'download\'s leftImg8bit/ and gtFine/ with *_labelTrainIds.png: '
                            'mIoU over 19 classes at each image\'s own resolution (default: '
                            'none)')
    dense.add_argument('--out', metavar='FILE', type=output_file,
                       help='metrics as JSON (percent), and for COCO the detections in '
                            'COCO results format beside it as <name>.detections.json '
                            '(default: printed only)')
    common.add_centernet_modes(dense)
    dense.add_argument('--task', choices=('classification', 'detection', 'segmentation',
                                          'tracking'),
                       help='what to evaluate, checked against --model and the data options '
                            '(default: as they say)')
    dense.add_argument('--mot-dir', metavar='DIR',
                       help='MOTChallenge sequences (each with seqinfo.ini, img1/ and '
                            'gt/gt.txt; or one sequence): FairMOT tracked through every '
                            'sequence and scored with motmetrics as FairMOT\'s evaluation '
                            'does, MOTA, IDF1, ID switches per sequence and overall '
                            '(default: none)')
    common.add_input_size(dense)
    dense.add_argument('--results-dir', metavar='DIR',
                       help='tracking: where each sequence\'s MOTChallenge results are kept, '
                            'as <sequence>.txt (default: <--out without .json>.tracks, or '
                            'tracks/)')


def _gather(tally, world):
    if world == 1:
        return tally
    import paddle.distributed as dist

    from ..evaluation.runner import Tally
    parts = []
    dist.all_gather_object(parts, tally)
    return Tally.merge(parts)


def _deployed_predictor(model, preprocess, args):
    """``model`` exported once (cached by weights and size) and run by ``--engine`` in
    ``--precision``; for INT8, quantized once on the calibration images."""
    from ..inference.predictor import compile_model
    calibration = None
    if args.precision == INT8:
        from .quantize import calibration_files, calibration_inputs
        folder, option = _calibration_folder(args, dense=False)
        files = calibration_files(folder, args.calib_count, option)
        calibration = calibration_inputs(files, lambda path: preprocess(path)[None])
    size = preprocess.img_size
    return compile_model(model, input_shape=(None, model.in_chans, size, size),
                         engine=OLD_ENGINE_NAMES.get(args.engine, args.engine),
                         precision=args.precision, threads=args.threads,
                         calibration=calibration)


def _warm_up(predict, batch_size, channels, size):
    """One batch of zeros before the clock starts, so that the rates measure the steady
    state: 'auto' chooses its engine on it, and engines build their kernels for the shape.
    The time it takes is reported as set-up, with the export's."""
    import numpy as np
    predict(np.zeros((batch_size, channels, size, size), 'float32'))


def _how_run(predict, args, setup_s):
    """What ran the model, how the CPU was shared with decoding, and the set-up time."""
    engine = getattr(predict, 'engine', EAGER) + (f' ({AUTO})' if args.engine == AUTO else '')
    return {'engine': engine, 'precision': getattr(predict, 'precision', 'fp32'),
            'model_threads': args.threads or os.cpu_count() or 1,
            'decode_workers': args.workers, 'setup_s': round(setup_s, 1)}


def _torch_predictor(model):
    from ..weights.convert.verify import timm_available, timm_holding, torch_predictor
    if not timm_available():
        raise UsageError('--compare-torch needs PyTorch and timm: pip install torch timm')
    return torch_predictor(timm_holding(model))


def launch(args):
    """Run this evaluation as ``args.nproc`` ranks under ``paddle.distributed.launch``, its
    log files in a temporary folder and its INFO lines kept back unless --verbose."""
    import subprocess
    worker = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'eval_worker.py')
    forwarded = strip_option(args.argv, '--nproc')
    logs = tempfile.mkdtemp(prefix='paddle_dla_launch_')
    command = [sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node',
               str(args.nproc), '--log_dir', logs,
               '--log_level', 'INFO' if args.verbose else 'ERROR', worker, *forwarded]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (SOURCE_ROOT, os.environ.get('PYTHONPATH')) if p))
    if not args.verbose:
        env['PYTHONWARNINGS'] = 'ignore:No ccache found'
    launcher = subprocess.Popen(command, env=env)
    try:
        return launcher.wait()
    except Terminated:
        # The ranks run in sessions of their own: only the launcher can stop them (SIGTERM,
        # then SIGKILL after 30 s). subprocess.run would SIGKILL it and orphan them.
        launcher.send_signal(signal.SIGTERM)
        try:
            launcher.wait(timeout=40)
        except subprocess.TimeoutExpired:
            launcher.kill()
        raise
    finally:
        shutil.rmtree(logs, ignore_errors=True)


def strip_option(argv, option):
    """``argv`` without ``option VALUE`` / ``option=VALUE``."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == option:
            skip = True
        elif not arg.startswith(option + '='):
            out.append(arg)
    return out


def uses_torch(args):
    return args.compare_torch


def published_weights(name, path):
    """``(registry entry, how it was recognised)`` when the file at ``path`` holds the
    published weights of ``name``, else None: only then do the published numbers apply."""
    if os.fspath(path).endswith('.pdparams'):
        return _cached_conversion(name, path)
    return _published_checkpoint(name, path)


def _published_checkpoint(name, path):
    """A ``.pth``/``.safetensors`` recognised by content as the converter recognises it: it
    matches a published file by that file's own check. A matching name proves nothing."""
    from ..weights.convert.identify import identify
    if not os.path.isfile(path):
        return None
    match = identify(path, file_digests(path))
    if match is None or match[2] not in (FULL, PREFIX) or match[0].variant != name:
        return None
    entry, source, how = match
    return entry, f'the published {source.filename} of {entry.name} (its {how} matches)'


def _cached_conversion(name, path):
    """A ``.pdparams`` has no published digest: it is the published weights when it is,
    byte for byte, this machine's cached conversion of a registry entry."""
    for entry in list_weights(name):
        cached = cached_weights_path(entry.variant, entry.tag)
        if os.path.isfile(cached) and filecmp.cmp(path, cached, shallow=False):
            return entry, (f'identical to the cached conversion of the published '
                           f'{entry.name} weights')
    return None


def _weights_of(name, args):
    """``(registry entry whose numbers apply or None, what was loaded in words)``."""
    if not args.weights:
        entry = get_weights(name, args.tag)
        return entry, f'the published {entry.name} weights'
    published = published_weights(name, args.weights)
    if published is None:
        return None, f'{os.path.abspath(args.weights)}, not the registry\'s published weights'
    entry, how = published
    return entry, f'{os.path.abspath(args.weights)}: {how}'


def _summary(samples, labels, args):
    """What the run reads, said before it starts (the label file above all, which may have
    been found rather than given)."""
    return (f'data: {len(samples):,} images in {os.path.abspath(args.data_dir)}, '
            f'{decoding_split(args.workers)}\nlabels: {labels.describe()}')


def _check_calibration_options(args):
    """--calib-dir and --calib-count: for --precision int8 only."""
    given = [option for option, value in (('--calib-dir', args.calib_dir),
                                          ('--calib-count', args.calib_count)) if value]
    if args.precision != INT8 and given:
        raise UsageError(f'{" and ".join(given)} {"is" if len(given) == 1 else "are"} for '
                         f'--precision int8 (calibration), not {args.precision}')
    if args.calib_count is None:
        args.calib_count = DEFAULT_CALIBRATION_IMAGES


def _calibration_folder(args, dense):
    """(folder, the option naming it) INT8 is calibrated on: --calib-dir, else the
    evaluation's own images."""
    from . import evaluate_dense
    if dense:
        return evaluate_dense.calibration_folder(args)
    return (args.calib_dir, '--calib-dir') if args.calib_dir else (args.data_dir, '--data-dir')


def _check_calibration_folder(args, dense):
    """For INT8, the calibration folder holds enough images: checked before any weights
    are fetched, and once, before --nproc launches its processes, rather than by each of
    them."""
    from .quantize import calibration_files
    folder, option = _calibration_folder(args, dense)
    if args.calib_dir or (folder and os.path.isdir(folder)):  # else the data is refused later
        calibration_files(folder, args.calib_count, option)


def run(args):
    _check_calibration_options(args)
    from . import evaluate_dense
    dense = evaluate_dense.wanted(args)
    if args.precision == INT8 and args.engine not in (AUTO, INT8_ENGINE):
        raise UsageError(f'--precision int8 runs on {INT8_ENGINE}, not --engine {args.engine}')
    launched = 'PADDLE_TRAINERS_NUM' in os.environ
    if args.precision == INT8 and not launched:
        _check_calibration_folder(args, dense)
    if args.nproc > 1 and not launched:
        return launch(args)
    if dense:
        if args.precision not in ('fp32', INT8):
            raise UsageError(f'--precision {args.precision} is offered for the classifiers; '
                             f'the dense networks are evaluated in fp32 or int8')
        return evaluate_dense.run(args)
    names = args.model
    if args.weights and len(names) > 1:
        raise UsageError('--weights needs a single --model')
    if not args.data_dir:
        raise UsageError('--data-dir is required: the ILSVRC2012 validation images')
    if args.task not in (None, 'classification'):
        raise UsageError(f'--task {args.task} evaluates a dense network: give its --model')
    for option in ('images', 'out', 'flip_test', 'keep_res', 'mot_dir', 'results_dir',
                   'input_size'):
        if getattr(args, option):
            raise UsageError(f'--{option.replace("_", "-")} is for the dense networks')
    samples, labels = find_samples(args.data_dir, args.label_file)
    if args.limit:
        samples = samples[:args.limit]
    rank, world = distributed_rank(quiet=not args.verbose)
    shard = samples[rank::world]
    if rank == 0:
        print(_summary(samples, labels, args), flush=True)

    rows, strict_failed = [], False
    for name in names:
        try:
            row = _evaluate_model(name, args, shard, labels, rank, world)
        except ImageReadError as exc:
            raise ImageReadError(f'{exc}; pass --skip-bad to count and list unreadable '
                                 f'images and go on (no verdict then)') from None
        if row is not None:
            rows.append(row)
            strict_failed |= row['verdict'] == 'FAIL'
    if rank == 0 and args.results_file:
        write_results(rows, args.results_file)
        print(f'results: {args.results_file}')
    return 1 if (args.strict and strict_failed) else 0


def _check_resize(preprocess):
    """A crop size and crop_pct whose resize no image could take are a usage error, not a
    reason to call every image bad."""
    if preprocess.resize ** 2 > MAX_RESIZED_PIXELS:
        raise UsageError(f'--img-size {preprocess.img_size} with --crop-pct '
                         f'{preprocess.crop_pct:g} resizes the short side to '
                         f'{preprocess.resize:,} px, beyond the {MAX_RESIZED_PIXELS:,} pixels '
                         f'an image may be resized to; raise --crop-pct')


def _evaluate_model(name, args, shard, labels, rank, world):
    """Evaluate one variant; returns its results row on rank 0, None elsewhere."""
    from ..evaluation.runner import evaluate, progress_bar
    from ..inference.eager import eager_predictor
    from ..models.complexity import count_params
    from ..zoo.factory import create_model

    weights = get_weights(name, args.tag)
    preprocess = Preprocess.of(weights.preprocessing, backend=args.backend,
                               img_size=args.img_size, crop_pct=args.crop_pct,
                               interpolation=args.interpolation)
    _check_resize(preprocess)
    model = create_model(name, pretrained=args.weights or args.tag)
    model.eval()
    setup = time.perf_counter()
    predict = (eager_predictor(model) if args.engine == EAGER else
               _deployed_predictor(model, preprocess, args))
    if args.engine != EAGER:
        _warm_up(predict, args.batch_size, model.in_chans, preprocess.img_size)
    setup = time.perf_counter() - setup
    compare = _torch_predictor(model) if args.compare_torch else None
    bar = progress_bar(len(shard), f'{name} [{rank}/{world}]' if world > 1 else name,
                       enabled=rank == 0 and not args.no_progress)
    try:
        tally = evaluate(predict, shard, preprocess, args.batch_size,
                         args.workers, args.skip_bad, compare, bar)
    finally:
        if bar is not None:
            bar.close()
    tally = _gather(tally, world)
    if rank != 0:
        return None
    params = count_params(model)
    published, described = _weights_of(name, args)
    row = result_row(name, tally, published, preprocess, params, args.tolerance,
                     _how_run(predict, args, setup), labels)
    print(format_table(row, tally, published, labels, described, args.tolerance, params),
          flush=True)
    return row


def main(argv=None, prog='imagenet_val'):
    # SIGTERM unwinds like Ctrl-C, so temporary folders are removed either way
    return common.script_main(sys.modules[__name__], prog, argv)
