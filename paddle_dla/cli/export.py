"""``paddle-dla export``: a model written for Paddle Inference, with what ``predict`` needs
to serve it (variant, class names, preprocessing) recorded beside it."""
import os

from ..core.errors import UsageError, printable
from ..models.dense_variants import DENSE_VARIANTS
from ..models.preprocessing import DEFAULT as DEFAULT_PREPROCESSING
from ..models.preprocessing import INPUT_SIZE_RANGE
from ..models.registry import get_model
from . import common
from .args import image_size, non_negative_int, path_text

HELP = 'write a Paddle Inference model'
DESCRIPTION = ('Export a DLA model (published weights or your own) for Paddle Inference; '
               'the preprocessing, variant and class names are recorded beside it.')
EPILOG = common.DEPLOY_EXAMPLES


def configure(p):
    common.add_model_options(p, non_negative_int, required=True)  # 0: a feature extractor
    p.add_argument('--out', required=True, metavar='DIR', type=path_text,
                   help='output folder (required; created if needed)')
    sizes = ', '.join(('any, each image at its own' if c.input.native else
                       f'{c.input.height}x{c.input.width}') + f' for {c.name}'
                      for c in DENSE_VARIANTS.values() if c.name.endswith('34') or
                      c.name.startswith('dla34'))
    p.add_argument('--img-size', type=image_size, metavar='PIXELS',
                   help=f'input height and width, {INPUT_SIZE_RANGE} (default: '
                        f'{DEFAULT_PREPROCESSING.img_size}; a dense model\'s own input '
                        f'size: {sizes})')
    p.add_argument('--dynamic', action='store_true',
                   help='accept any input size (default: fixed to --img-size)')
    p.add_argument('--class-names', metavar='FILE',
                   help='text file, one class name per line, recorded for predict (default: '
                        'ImageNet\'s names for 1000 classes, numbers otherwise)')


def read_class_names(path):
    try:
        with open(path, encoding='utf-8') as f:
            names = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f'cannot read --class-names {printable(path)}: {exc}') from None
    return names


def run(args):
    from ..inference.predictor import export, is_dense_model
    multiple = get_model(args.model).input_multiple
    if args.img_size and args.img_size % multiple:
        raise UsageError(f'--img-size {args.img_size}: {args.model} needs a multiple of '
                         f'{multiple}')
    names = read_class_names(args.class_names) if args.class_names else None
    model = common.build_model(args)
    model.eval()
    if is_dense_model(model):
        return export_dense(model, names, args)
    if names is not None and len(names) != model.num_classes:
        raise UsageError(f'--class-names {printable(args.class_names)} has {len(names)} names '
                         f'but the model has {model.num_classes} classes')
    size = args.img_size or DEFAULT_PREPROCESSING.img_size
    spatial = [None, None] if args.dynamic else [size, size]
    prefix = os.path.join(args.out, model.config.name)
    files = export(model, prefix, input_shape=[None, model.in_chans] + spatial,
                   weights=args.weights or args.tag, class_names=names)
    print(f'exported {model.config.name} ({model.num_classes} classes, input '
          f'[N, {model.in_chans}, {spatial[0] or "H"}, {spatial[1] or "W"}]) to '
          + ', '.join(files))
    return 0


def export_dense(model, names, args):
    from ..inference.predictor import export
    recipe = model.config.input
    spatial = ([None, None] if args.dynamic or (recipe.native and not args.img_size) else
               [args.img_size] * 2 if args.img_size else [recipe.height, recipe.width])
    prefix = os.path.join(args.out, model.config.name)
    files = export(model, prefix, input_shape=[None, 3] + spatial, weights=args.weights,
                   class_names=names)
    print(f'exported {model.config.name} (outputs {", ".join(model.output_names)}; input '
          f'[N, 3, {spatial[0] or "H"}, {spatial[1] or "W"}]) to ' + ', '.join(files))
    return 0
