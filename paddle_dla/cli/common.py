"""What every command line shares: how it is parsed, how quiet Paddle is, and how a
failure is reported (one line on stderr, an exit status, a traceback only with --debug).

Subcommand modules keep their heavy imports (Paddle, the models) inside ``run`` so that
``--help`` answers at once; they describe themselves with ``HELP``, ``DESCRIPTION``,
``EPILOG``, ``configure(parser)`` and ``run(args)``, and may say ``USES_PADDLE = False`` or
``uses_torch(args)``: :func:`execute` loads what a run needs, in the order that works.
"""
import argparse
import os
import signal
import sys

from ..core.errors import UsageError, exit_cleanly_on_sigterm, run_command
from ..models.dense_variants import DENSE_VARIANTS
from ..models.imagenet import NUM_CLASSES
from ..models.registry import CLASSIFIER_FAMILY, get_model
from ..models.variants import VARIANTS
from ..weights.registry import DEFAULT_TAG, WEIGHTS
from .args import ArgumentParser, input_size, model_name

# Paddle's C++ logging (glog): INFO lines and notices stay out of the user's way.
QUIET_ENVIRONMENT = {'GLOG_minloglevel': '2', 'GLOG_v': '0'}


DEPLOY_EXAMPLES = """\
examples:
  paddle-dla export --model dla_34 --out exported/          # published weights
  paddle-dla predict cat.jpg dog.jpg --exported exported/  # the fastest engine here
  paddle-dla predict cat.jpg --model dla_60 --topk 3       # published weights, exported once
  paddle-dla predict cat.jpg --model dla_60 --engine eager # the Paddle model itself
  paddle-dla export --model dla_34 --weights mine.pdparams --num-classes 10 \\
      --class-names pets.txt --out exported/
"""


def add_model_options(p, num_classes, required):
    """--model, --weights, --tag and --num-classes: which model, holding which weights."""
    p.add_argument('--model', metavar='NAME', required=required, type=model_name,
                   help=f'variant: {", ".join(VARIANTS)} (timm names work too); or a dense '
                        f'model: {", ".join(DENSE_VARIANTS)}'
                        + (' (required)' if required else ' (default: none, use --exported)'))
    p.add_argument('--weights', metavar='FILE',
                   help='.pdparams/.pth/.safetensors file; a dense model\'s CenterNet, '
                        'FairMOT or DLA-Up .pth or its converted .pdparams (default: none, '
                        'the published weights of --tag are used)')
    p.add_argument('--tag', default=DEFAULT_TAG, choices=sorted({t for _, t in WEIGHTS}),
                   help='published weights tag (default: %(default)s)')
    p.add_argument('--num-classes', type=num_classes, default=NUM_CLASSES, metavar='N',
                   help='classes of a classifier; other than the weights\' own, the '
                        'classifier is left freshly initialised (default: %(default)s; a dense '
                        'model takes its heads or classes from --weights)')


def add_centernet_modes(p, keep_res_needs=''):
    """--flip-test and --keep-res, CenterNet's test modes, for predict and eval alike."""
    p.add_argument('--flip-test', action='store_true',
                   help='CenterNet: average each image with its mirror image, as the '
                        'reference\'s --flip_test does, twice the work (default: off)')
    p.add_argument('--keep-res', action='store_true',
                   help='CenterNet: run each image at its own resolution (padded to a '
                        'multiple of 32) rather than warped into 512x512, as the reference\'s '
                        f'--keep_res does{keep_res_needs} (default: off)')


def add_input_size(p):
    """--input-size, the network input of CenterNet and FairMOT, for predict, track and
    eval alike."""
    sizes = ', '.join(f'{c.input.width}x{c.input.height} for {c.name}'
                      for c in DENSE_VARIANTS.values() if not c.input.native)
    p.add_argument('--input-size', type=input_size, metavar='WxH',
                   help=f'CenterNet and FairMOT: the network\'s input, width x height, '
                        f'multiples of 32, as the reference\'s --input_res and img_size; every '
                        f'image is warped or letterboxed into it (default: the recipe\'s: '
                        f'{sizes}; smaller runs faster and finds small objects less well)')


def build_model(args):
    """The model ``add_model_options`` describe, holding its weights: a file, or the
    published ones of ``--tag`` where there are any. A classifier takes ``--num-classes``;
    a dense network its heads or classes from its file."""
    from ..zoo.factory import create_model
    entry = get_model(args.model)
    published = any(variant == entry.name for variant, _ in WEIGHTS)
    if not (published or args.weights):
        raise UsageError(f'{args.model} has no published Paddle weights: give --weights '
                         f'with its PyTorch checkpoint (.pth) or the .pdparams paddle-dla '
                         f'convert wrote from one')
    shape = {'num_classes': args.num_classes} if entry.family == CLASSIFIER_FAMILY else {}
    return create_model(entry.name, pretrained=args.weights or args.tag, **shape)


def add_common_options(parser):
    parser.add_argument('--debug', action='store_true',
                        help='show tracebacks on errors (default: one line)')
    parser.add_argument('--verbose', action='store_true',
                        help='let Paddle\'s own log lines through (default: warnings and '
                             'errors only)')


def parser_for(module, prog):
    """A stand-alone parser for one subcommand module (the scripts' entry points)."""
    parser = ArgumentParser(prog=prog, description=module.DESCRIPTION, epilog=module.EPILOG,
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    module.configure(parser)
    add_common_options(parser)
    return parser


def keep_paddle_quiet(verbose=False):
    """Keep Paddle's log below warnings unless ``verbose``. Environment variables only reach
    Paddle before it is imported, and are inherited by the processes it starts."""
    if verbose:
        return
    for name, value in QUIET_ENVIRONMENT.items():
        os.environ.setdefault(name, value)


def load_paddle():
    """Import Paddle now (after ``load_torch_first`` where PyTorch may be used), and take
    SIGTERM back from the crash handler Paddle's import installs (see
    ``exit_cleanly_on_sigterm``). SIGTERM stays blocked meanwhile: one sent during the
    import is delivered once our handler is back, so it never meets Paddle's."""
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    try:
        import paddle  # noqa: F401
        exit_cleanly_on_sigterm()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def load_torch_first():
    """Paddle 2.6 crashes when PyTorch is imported after it (their bundled zlib builds
    clash): a run that may use PyTorch imports it before Paddle."""
    try:
        import torch  # noqa: F401
    except ImportError:
        pass


def execute(prog, module, args, argv):
    args.prog = prog  # for the messages ``run`` prints itself
    args.argv = list(argv)  # the subcommand's own arguments, for a relaunch
    keep_paddle_quiet(args.verbose)

    def action():
        if getattr(module, 'uses_torch', lambda _: False)(args):
            load_torch_first()
        if getattr(module, 'USES_PADDLE', True):
            load_paddle()
        return module.run(args)
    return run_command(prog, action, args.debug)


def script_main(module, prog, argv=None):
    """``main`` of a subcommand module run as its own tool (``tools/torch2paddle.py``)."""
    exit_cleanly_on_sigterm()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser_for(module, prog).parse_args(argv)
    return execute(prog, module, args, argv)
