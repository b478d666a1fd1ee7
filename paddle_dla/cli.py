"""``paddle-dla`` (or ``python -m paddle_dla``): export a model for Paddle Inference, and
classify images with it or with an eager model."""
import argparse
import os

import numpy as np

from .errors import report
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


def cmd_predict(args):
    from .evaluation.transforms import Preprocess
    from .imagenet import class_names
    from .weights import get_weights

    if args.exported:
        from .inference import Predictor
        predictor = Predictor(args.exported, device=args.device, precision=args.precision)
        variant = predictor.meta.get('variant', args.model or 'dla_34')
        num_classes = predictor.meta.get('num_classes', 1000)
        run = predictor
    else:
        if not args.model:
            raise ValueError('give --model NAME (eager) or --exported DIR (Paddle Inference)')
        import paddle
        model = _build_model(args)
        model.eval()
        variant, num_classes = model.config.name, model.num_classes

        def run(batch):
            with paddle.no_grad():
                return model(paddle.to_tensor(batch)).numpy()
    preprocess = Preprocess.from_weights(get_weights(variant).transform)
    names = class_names() if num_classes == 1000 else [f'class {i}' for i in range(num_classes)]
    k = min(args.topk, num_classes)
    for path in args.images:
        probs = _softmax(run(preprocess(path)[None]))[0]
        top = np.argsort(-probs)[:k]
        print(path)
        for rank, index in enumerate(top, 1):
            print(f'  {rank}. {names[index]:<32} {100 * probs[index]:6.2f}%')
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog='paddle-dla', epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     description='DLA models for Paddle: export and predict.')
    parser.add_argument('--debug', action='store_true', help='show tracebacks on errors')
    sub = parser.add_subparsers(dest='command', required=True)

    def model_args(p, required):
        p.add_argument('--model', required=required,
                       help=f'variant: {", ".join(VARIANTS)} (timm names work too)')
        p.add_argument('--weights', help='.pdparams/.pth/.safetensors file (default: the '
                                         'published weights of --tag)')
        p.add_argument('--tag', default='official', help='published weights tag')
        p.add_argument('--num-classes', type=int, default=1000,
                       help='classes of --weights (fine-tuned models)')

    export = sub.add_parser('export', help='write a Paddle Inference model',
                            epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    model_args(export, required=True)
    export.add_argument('--out', required=True, help='output folder')
    export.add_argument('--img-size', type=int, default=224, help='input size (default 224)')
    export.add_argument('--dynamic', action='store_true', help='accept any input size')
    export.set_defaults(func=cmd_export)

    predict = sub.add_parser('predict', help='classify images (top-k ImageNet classes)',
                             epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    predict.add_argument('images', nargs='+', help='image files')
    model_args(predict, required=False)
    predict.add_argument('--exported', help='exported model folder or prefix (Paddle Inference)')
    predict.add_argument('--device', default='cpu', help='cpu or gpu[:N] (with --exported)')
    predict.add_argument('--precision', default='fp32', help='fp32, bf16 (CPU) or fp16 (GPU)')
    predict.add_argument('--topk', type=int, default=5)
    predict.set_defaults(func=cmd_predict)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as exc:  # noqa: BLE001 - one line for the user
        report('paddle-dla', exc, debug=args.debug)
        return 2
