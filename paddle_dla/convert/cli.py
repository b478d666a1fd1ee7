"""Command line of ``convert/torch2paddle.py``: a PyTorch DLA checkpoint to ``.pdparams``."""
import argparse
import hashlib
import os
import sys
import traceback

from ..checkpoint import StateDictMismatch, save_pdparams
from ..variants import VARIANTS, get_config
from .mapping import convert_state_dict
from .readers import CheckpointReadError, read_torch_checkpoint

EXAMPLES = """\
examples:
  # a timm-layout PyTorch checkpoint of DLA-34
  python convert/torch2paddle.py --src dla34-2b83ff04.pth --model dla_34 --dst dla_34.pdparams
  # then, in Python
  paddle_dla.create_model('dla_34', pretrained='dla_34.pdparams')
"""


class ConversionError(Exception):
    """An input problem the user can fix; printed as one line without a traceback."""


def build_parser():
    parser = argparse.ArgumentParser(
        prog='torch2paddle.py', description='Convert a PyTorch DLA checkpoint (.pth) into Paddle '
        'weights (.pdparams), strictly: every key must map, with the right shape.',
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--src', required=True, help='PyTorch checkpoint (.pth) to convert')
    parser.add_argument('--model', required=True,
                        help=f'variant, ours or timm\'s name: {", ".join(VARIANTS)}')
    parser.add_argument('--dst', required=True, help='output .pdparams path')
    parser.add_argument('--debug', action='store_true', help='show tracebacks on errors')
    return parser


def sha256_of(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for block in iter(lambda: f.read(chunk), b''):
            digest.update(block)
    return digest.hexdigest()


def convert_file(src, model, dst):
    """Convert one file; returns the summary line."""
    config = get_config(model)
    state = read_torch_checkpoint(src)
    if not isinstance(state, dict) or not all(hasattr(v, 'shape') for v in state.values()):
        raise ConversionError(f'{src} does not hold a flat state dict of tensors; '
                              f'unsupported layout')
    converted = convert_state_dict(state, config.name)
    save_pdparams(converted, dst)
    n_params = sum(v.size for k, v in converted.items()
                   if not k.endswith(('_mean', '_variance')))
    return (f'converted {src} -> {dst}: {config.name}, {converted["fc.weight"].shape[0]} classes, '
            f'{n_params:,} parameters, sha256 {sha256_of(dst)}')


def main(argv=None):
    args = build_parser().parse_args(argv)
    try:
        print(convert_file(args.src, args.model, args.dst))
    except (ConversionError, CheckpointReadError, StateDictMismatch, FileNotFoundError,
            ValueError, OSError) as exc:
        if args.debug:
            traceback.print_exc()
        print(f'torch2paddle: error: {" ".join(str(exc).split())}', file=sys.stderr)
        return 2
    return 0
