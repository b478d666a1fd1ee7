#!/usr/bin/env python
"""Fine-tune a (pretrained) DLA on your own folder of images.

    data/train/<class>/*.jpg and data/val/<class>/*.jpg     (or one folder and --val-split)

    python examples/finetune.py --model dla_34 --data-dir data --epochs 10 --output runs/pets
    python examples/finetune.py ... --resume runs/pets/last        # continue where it stopped
    python -m paddle.distributed.launch --nproc_per_node 4 examples/finetune.py ...

The pretrained classifier is replaced by one with your number of classes. Each epoch
reports top-1/top-5 on the validation split and writes ``last.*`` (and ``best.*``) to
--output; the weights are a plain ``.pdparams`` that ``create_model(..., pretrained=path,
num_classes=N)`` loads.
"""
import argparse
import os
import sys

try:
    import paddle_dla  # noqa: F401
except ImportError:  # running from a source checkout that is not installed
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from paddle_dla.cli.args import (ArgumentParser, float_range, image_size, int_range,  # noqa: E402
                                 non_negative_int, positive_int, variant_name)
from paddle_dla.core.errors import exit_cleanly_on_sigterm, run_command  # noqa: E402
from paddle_dla.models.preprocessing import DEFAULT as DEFAULT_PREPROCESSING  # noqa: E402

PROG = 'finetune.py'


def parse_args(argv=None):
    p = ArgumentParser(prog=PROG, description=__doc__.split('\n\n')[0], epilog=__doc__,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('--model', default='dla_34', type=variant_name,
                   help='variant (default: %(default)s)')
    p.add_argument('--data-dir', required=True,
                   help='class folders, or train/ and val/ holding them (required)')
    p.add_argument('--val-split', type=float_range(0, 1, low_open=True), default=0.2,
                   help='share held out when there are no train/ and val/ folders '
                        '(default: %(default)s)')
    p.add_argument('--weights', help='start from this .pdparams/.pth file instead of the '
                                     'published weights (default: published)')
    p.add_argument('--no-pretrained', action='store_true',
                   help='start from random weights (default: pretrained)')
    p.add_argument('--freeze-backbone', action='store_true',
                   help='train the classifier only (default: train everything)')
    p.add_argument('--epochs', type=positive_int, default=10,
                   help='passes over the training images (default: %(default)s)')
    p.add_argument('--batch-size', type=positive_int, default=32,
                   help='per device (default: %(default)s)')
    p.add_argument('--lr', type=float_range(0, float('inf'), low_open=True), default=0.01,
                   help='peak learning rate, cosine decay (default: %(default)s)')
    p.add_argument('--weight-decay', type=float_range(0, float('inf')), default=1e-4,
                   help='L2 penalty on the weights (default: %(default)s)')
    p.add_argument('--img-size', type=image_size, default=DEFAULT_PREPROCESSING.img_size,
                   help='training and validation size in pixels (default: %(default)s)')
    p.add_argument('--workers', type=non_negative_int, default=2,
                   help='data loading processes, 0 loads in this one (default: %(default)s)')
    p.add_argument('--output', default='runs/finetune',
                   help='folder for last.* and best.* (default: %(default)s)')
    p.add_argument('--resume', help='checkpoint prefix to continue from, e.g. runs/x/last '
                                    '(default: start afresh)')
    p.add_argument('--amp', action='store_true', help='mixed precision (default: on GPU only)')
    p.add_argument('--seed', type=int_range(0, 2**32 - 1, what='a seed'), default=0,
                   help='for the split, the initial head and the augmentations '
                        '(default: %(default)s)')
    p.add_argument('--debug', action='store_true',
                   help='show tracebacks on errors (default: one line)')
    p.add_argument('--verbose', action='store_true',
                   help='let Paddle\'s own log lines through (default: warnings and errors only)')
    return p.parse_args(argv)


def main(argv=None):
    exit_cleanly_on_sigterm()
    args = parse_args(argv)
    if not args.verbose:
        os.environ.setdefault('GLOG_minloglevel', '2')

    def train():
        import finetune_train  # beside this script; loads Paddle
        return finetune_train.train(args)
    return run_command(PROG, train, args.debug)


if __name__ == '__main__':
    sys.exit(main())
