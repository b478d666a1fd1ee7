"""``paddle-dla`` (or ``python -m paddle_dla``): export a model for Paddle Inference, and
classify images with it or with an eager model."""
import argparse
import os

import numpy as np

from .cli_args import (ArgumentParser, image_size, non_negative_int, path_text, positive_int,
                       variant_name)
from .errors import exit_cleanly_on_sigterm, run_command
from .imagenet import NUM_CLASSES
from .preprocessing import DEFAULT as DEFAULT_PREPROCESSING
from .inference import DEVICE_PATTERN, PRECISIONS
from .variants import VARIANTS

EXAMPLES = """\
examples:
  paddle-dla export --model dla_34 --out exported/          # published weights
  paddle-dla predict cat.jpg dog.jpg --exported exported/  # served by Paddle Inference
  paddle-dla predict cat.jpg --model dla_60 --topk 3       # eager, published weights
  paddle-dla export --model dla_34 --weights mine.pdparams --num-classes 10 --out exported/
"""


def _build_model(args):
    from .factory import create_model
    pretrained = args.weights or args.tag
    return create_model(args.model, pretrained=pretrained, num_classes=args.num_classes)


def cmd_export(args):
    from .inference import export
    model = _build_model(args)
    model.eval()
    spatial = [None, None] if args.dynamic else [args.img_size, args.img_size]
    prefix = os.path.join(args.out, model.config.name)
    files = export(model, prefix, input_shape=[None, model.in_chans] + spatial,
                   weights=args.weights or args.tag)
    print(f'exported {model.config.name} ({model.num_classes} classes, input '
          f'[N, {model.in_chans}, {spatial[0] or "H"}, {spatial[1] or "W"}]) to '
          + ', '.join(files))
    return 0


def _softmax(logits):
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted.astype(np.float64))
    return e / e.sum(axis=1, keepdims=True)


def _exported_runner(args):
    """(recipe, run) for a model served by Paddle Inference: the preprocessing the export
    recorded, else the published weights' recipe of its variant."""
    from .inference import Predictor, recipe_of
    from .weights import get_weights
    predictor = Predictor(args.exported, device=args.device, precision=args.precision)
    recipe = recipe_of(predictor.meta) or get_weights(
        predictor.meta.get('variant', args.model or 'dla_34')).preprocessing
    return recipe, predictor


def _eager_runner(args):
    """(recipe, run) for an eager model built from --model and --weights/--tag."""
    from .dla import eager_predictor
    from .weights import get_weights
    if not args.model:
        raise ValueError('give --model NAME (eager) or --exported DIR (Paddle Inference)')
    model = _build_model(args)
    model.eval()
    return get_weights(model.config.name).preprocessing, eager_predictor(model)


def _class_names(count):
    """ImageNet's names for a 1000-way output, numbers otherwise (fine-tuned models)."""
    from .imagenet import class_names
    return class_names() if count == NUM_CLASSES else [f'class {i}' for i in range(count)]


def cmd_predict(args):
    from .evaluation.transforms import Preprocess

    recipe, run = (_exported_runner if args.exported else _eager_runner)(args)
    preprocess = Preprocess.of(recipe)
    for path in args.images:
        probs = _softmax(run(preprocess(path)[None]))[0]
        names = _class_names(len(probs))  # the output decides, not what a file claims
        print(path)
        for rank, index in enumerate(np.argsort(-probs)[:args.topk], 1):
            print(f'  {rank}. {names[index]:<32} {100 * probs[index]:6.2f}%')
    return 0


def device(text):
    """An argparse type: ``cpu``, ``gpu`` or ``gpu:N``."""
    if not DEVICE_PATTERN.fullmatch(text):
        raise argparse.ArgumentTypeError(f'{text!r} is not a device: use cpu, gpu or gpu:N')
    return text


def _model_args(p, num_classes, required):
    p.add_argument('--model', metavar='NAME', required=required, type=variant_name,
                   help=f'variant: {", ".join(VARIANTS)} (timm names work too)'
                        + (' (required)' if required else ' (default: none, use --exported)'))
    p.add_argument('--weights', metavar='FILE',
                   help='.pdparams/.pth/.safetensors file (default: none, the published '
                        'weights of --tag are used)')
    p.add_argument('--tag', default='official',
                   help='published weights tag (default: %(default)s)')
    p.add_argument('--num-classes', type=num_classes, default=NUM_CLASSES, metavar='N',
                   help='classes of --weights, for fine-tuned models (default: %(default)s)')


def _export_parser(sub):
    p = sub.add_parser('export', help='write a Paddle Inference model', epilog=EXAMPLES,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    _model_args(p, non_negative_int, required=True)  # 0: a feature extractor without classifier
    p.set_defaults(func=cmd_export)
    p.add_argument('--out', required=True, metavar='DIR', type=path_text,
                   help='output folder (required; created if needed)')
    p.add_argument('--img-size', type=image_size, default=DEFAULT_PREPROCESSING.img_size,
                   metavar='PIXELS',
                   help='input height and width, 32 to 4096 (default: %(default)s)')
    p.add_argument('--dynamic', action='store_true',
                   help='accept any input size (default: fixed to --img-size)')
    return p


def _predict_parser(sub):
    p = sub.add_parser('predict', help='classify images (top-k ImageNet classes)',
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('images', nargs='+', help='image files')
    _model_args(p, positive_int, required=False)
    p.set_defaults(func=cmd_predict)
    p.add_argument('--exported', metavar='PATH',
                   help='exported model folder or prefix, served by Paddle Inference '
                        '(default: none, an eager --model)')
    p.add_argument('--device', type=device, default='cpu',
                   help='cpu, gpu or gpu:N, with --exported (default: %(default)s)')
    p.add_argument('--precision', choices=PRECISIONS, default='fp32',
                   help='fp32, bf16 (CPUs with AVX512-BF16 or AMX) or fp16 (GPU), with '
                        '--exported (default: %(default)s)')
    p.add_argument('--topk', type=positive_int, default=5, metavar='K',
                   help='classes shown per image (default: %(default)s)')
    return p


def build_parser():
    parser = ArgumentParser(prog='paddle-dla', epilog=EXAMPLES,
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            description='DLA models for Paddle: export and predict.')
    parser.add_argument('--debug', action='store_true',
                        help='show tracebacks on errors (default: one line)')
    sub = parser.add_subparsers(dest='command', required=True, metavar='{export,predict}')
    _export_parser(sub)
    _predict_parser(sub)
    return parser


def main(argv=None):
    exit_cleanly_on_sigterm()
    args = build_parser().parse_args(argv)
    return run_command('paddle-dla', lambda: args.func(args), args.debug)
