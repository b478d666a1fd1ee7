"""``paddle-dla``: one installed command for every job. Each subcommand is a module of
this package; parsing loads none of Paddle, so every ``--help`` answers at once."""
import argparse
import importlib
import sys

from ..core.errors import exit_cleanly_on_sigterm
from . import common
from .args import ArgumentParser

PROG = 'paddle-dla'
# subcommand: module (in the order --help lists them)
SUBCOMMANDS = {'convert': 'convert', 'to-torch': 'to_torch', 'eval': 'evaluate',
               'cache': 'cache', 'export': 'export', 'quantize': 'quantize', 'predict': 'predict',
               'track': 'track', 'bench': 'bench', 'info': 'info'}
EPILOG = """\
examples:
  paddle-dla info                                        # variants, weights, this machine
  paddle-dla convert --src dla34-ba72cf86.pth            # PyTorch checkpoint -> .pdparams
  paddle-dla eval --model dla_34 --data-dir val/         # top-1/top-5 on ILSVRC2012 val
  paddle-dla export --model dla_34 --out exported/       # for Paddle Inference
  paddle-dla predict cat.jpg --exported exported/
  paddle-dla track street.mp4 --weights fairmot_dla34.pth --out tracks.txt
Run paddle-dla COMMAND --help for each command's options.
"""


def subcommand_module(command):
    return importlib.import_module(f'.{SUBCOMMANDS[command]}', __name__)


def build_parser():
    parser = ArgumentParser(prog=PROG, epilog=EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter,
                            description='Deep Layer Aggregation (DLA) models for PaddlePaddle: '
                                        'convert, evaluate, export, predict, benchmark.')
    from ..core import __version__
    parser.add_argument('--version', action='version', version=f'%(prog)s {__version__}')
    sub = parser.add_subparsers(dest='command', required=True, metavar='COMMAND')
    for command in SUBCOMMANDS:
        module = subcommand_module(command)
        p = sub.add_parser(command, help=module.HELP, description=module.DESCRIPTION,
                           epilog=module.EPILOG,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.configure(p)
        common.add_common_options(p)
        p.set_defaults(module=module)
    return parser


def main(argv=None):
    exit_cleanly_on_sigterm()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    return common.execute(f'{PROG} {args.command}', args.module, args,
                          argv[argv.index(args.command) + 1:])
