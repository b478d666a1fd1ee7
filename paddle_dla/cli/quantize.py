"""``paddle-dla quantize``: post-training INT8 for CPU, calibrated on the user's own images
read through the model's own preprocessing, written as an export that ``Predictor``,
``predict --exported`` run on OpenVINO;
``eval --precision int8`` quantizes and scores in one command."""
import os
import sys

from ..core.errors import UsageError, one_line, printable
from ..inference.engines import DEFAULT_CALIBRATION_IMAGES, MIN_CALIBRATION_IMAGES
from ..models.registry import CLASSIFICATION, get_model
from . import common
from .args import calibration_count, image_size, non_negative_int, output_folder, path_text

HELP = 'post-training INT8 for CPU (NNCF into OpenVINO)'
DESCRIPTION = ('Quantize a model to INT8 with NNCF, calibrated on your images through the '
               'model\'s own preprocessing, into OpenVINO (a dense network\'s deformable '
               'convolutions stay in float). The result is an export carrying the INT8 model '
               'beside the float one: predict runs it with --exported, and eval --precision '
               'int8 quantizes and scores a model in one command.')
EPILOG = """\
examples:
  paddle-dla quantize --model dla_34 --calib-dir calib/ --out int8/
  paddle-dla quantize --exported exported/ --calib-dir calib/ --calib-count 500 --out int8/
  paddle-dla predict cat.jpg --exported int8/               # INT8 on OpenVINO
  paddle-dla quantize --model centernet_dla34 --weights ctdet_coco_dla_2x.pth \\
      --calib-dir coco/val2017/ --out det8/
  paddle-dla eval --model dla_34 --data-dir val/ --precision int8 --calib-dir calib/
"""


def configure(p):
    common.add_model_options(p, non_negative_int, required=False)
    p.add_argument('--exported', metavar='PATH', type=path_text,
                   help='quantize this export instead of --model (default: none)')
    p.add_argument('--calib-dir', required=True, metavar='DIR', type=path_text,
                   help='folder of calibration images (searched recursively), read by the '
                        'model\'s own preprocessing')
    p.add_argument('--calib-count', type=calibration_count,
                   default=DEFAULT_CALIBRATION_IMAGES, metavar='N',
                   help=f'images used, spread evenly over the sorted files, at least '
                        f'{MIN_CALIBRATION_IMAGES} (default: %(default)s, NNCF\'s own; all '
                        f'when fewer)')
    p.add_argument('--img-size', type=image_size, metavar='PIXELS',
                   help='a classifier\'s input height and width (default: its recipe\'s)')
    p.add_argument('--out', required=True, metavar='DIR', type=output_folder,
                   help='output folder (created if needed)')


def calibration_files(folder, count, option='--calib-dir'):
    """Up to ``count`` image files under ``folder`` (given as ``option``), spread evenly over
    their sorted paths (so that a folder sorted by class gives every class its share). Too
    few to calibrate on are refused here, before any is read."""
    from ..evaluation.dataset import IMAGE_SUFFIXES
    if not os.path.isdir(folder):
        raise UsageError(f'{option} {printable(folder)}: not a folder')
    files = sorted(os.path.join(root, name) for root, dirs, names in os.walk(folder)
                   for name in names
                   if name.lower().endswith(IMAGE_SUFFIXES) and not name.startswith('.'))
    if not files:
        raise UsageError(f'{option} {printable(folder)} holds no image to calibrate on '
                         f'({", ".join(IMAGE_SUFFIXES)})')
    if len(files) < MIN_CALIBRATION_IMAGES:
        raise UsageError(f'{option} {printable(folder)} holds {len(files)} images; INT8 '
                         f'calibration needs at least {MIN_CALIBRATION_IMAGES} '
                         f'({DEFAULT_CALIBRATION_IMAGES} recommended)')
    if len(files) <= count:
        return files
    return [files[i * len(files) // count] for i in range(count)]


def calibration_inputs(files, prepare):
    """The inputs of the files that decode, prepared again each time they are read (memory
    holds one at a time); the others are counted and named in one warning line, and too
    few readable images stop the run."""
    from ..inference.quantize import PreparedImages
    inputs, unreadable = PreparedImages.read(files, prepare)
    why = ''
    if unreadable:
        path, exc = unreadable[0]
        why = (f'{len(unreadable)} of {len(files)} images could not be read (first: '
               f'{printable(path)}: {exc})')
    if len(inputs) < MIN_CALIBRATION_IMAGES:
        folder = os.path.commonpath([os.path.dirname(f) for f in files])
        raise UsageError(f'calibration images in {printable(folder)}: {len(inputs)} '
                         f'readable; '
                         f'INT8 calibration needs at least {MIN_CALIBRATION_IMAGES} '
                         f'({DEFAULT_CALIBRATION_IMAGES} recommended)'
                         + (f'; {why}' if why else ''))
    if why:
        print(f'paddle_dla: warning: {why}; calibrating without them', file=sys.stderr)
    return inputs


def preparer(meta, metadata_file):
    """The model's own preprocessing, as the export recorded it: image file -> [1, C, H, W]
    (a dense network's at the export's size, or its recipe's where the size is free)."""
    from ..evaluation.transforms import Preprocess
    from ..inference.predictor import recipe_of
    if meta.get('task') not in (None, 'classification'):
        from ..tasks.serving import DenseSpec, prepare
        try:
            spec = DenseSpec.of_export(meta).fixed_to(meta.get('input_shape'))
        except (KeyError, TypeError, ValueError) as exc:
            raise UsageError(f'{printable(metadata_file)} records task '
                             f'{meta.get("task")!r} without what a dense network needs '
                             f'({one_line(exc)}): export it again with paddle-dla export') \
                from None
        return lambda path: prepare(spec, path)[0]
    recipe = recipe_of(meta)
    if recipe is None:
        raise UsageError(f'{printable(metadata_file)} records no preprocessing: export '
                         f'the model again with paddle-dla export')
    preprocess = Preprocess.of(recipe)
    return lambda path: preprocess(path)[None]


def source_export(args, workdir):
    """The prefix of the export to quantize: --exported, or --model exported into
    ``workdir``."""
    from ..inference.exported import locate, resolve_prefix
    from ..inference.predictor import export
    from ..weights.registry import get_weights
    if args.exported:
        if args.model:
            raise UsageError('give --model or --exported, not both')
        return locate(resolve_prefix(args.exported))[0]
    if not args.model:
        raise UsageError('give --model NAME (with --weights) or --exported DIR')
    dense = get_model(args.model).task != CLASSIFICATION
    if dense and args.img_size:
        raise UsageError(f'--img-size is a classifier\'s; {args.model} is quantized at its '
                         f'recipe\'s size (export it at another with paddle-dla export)')
    model = common.build_model(args)
    model.eval()
    prefix = os.path.join(workdir, model.config.name)
    if dense:
        export(model, prefix, weights=args.weights or args.tag)
    else:
        size = args.img_size or get_weights(model.config.name).preprocessing.img_size
        export(model, prefix, [None, model.in_chans, size, size],
               weights=args.weights or args.tag)
    return prefix


def run(args):
    import tempfile

    from ..inference.exported import META_SUFFIX, read_metadata
    from ..inference.quantize import quantization_available, quantize_export

    if args.exported:  # the export fixes the weights and the size
        given = [option for option, value in (('--weights', args.weights),
                                              ('--img-size', args.img_size)) if value]
        if given:
            raise UsageError(f'{" and ".join(given)} {"is" if len(given) == 1 else "are"} '
                             f'for --model: an export keeps the weights and input size it '
                             f'was made with')
    reason = quantization_available()  # before any weights, export or image is read
    if reason:
        raise UsageError(reason)
    files = calibration_files(args.calib_dir, args.calib_count)
    with tempfile.TemporaryDirectory(prefix='paddle-dla-quantize-') as workdir:
        prefix = source_export(args, workdir)
        meta = read_metadata(prefix)
        inputs = calibration_inputs(files, preparer(meta, prefix + META_SUFFIX))
        name = os.path.basename(prefix)
        print(f'calibrating {meta.get("variant", name)} on {len(inputs)} images from '
              f'{printable(args.calib_dir)}', flush=True)
        written = quantize_export(prefix, os.path.join(args.out, name), inputs,
                                  source=os.path.abspath(args.calib_dir))
    print('wrote ' + ', '.join(written))
    return 0
