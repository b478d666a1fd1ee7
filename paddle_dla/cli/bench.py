"""``paddle-dla bench`` (and ``tools/throughput.py``): images per second of every engine,
measured side by side on this machine."""
import argparse
import sys

from ..inference.engines import BENCH_ENGINES, ENGINES
from ..models.preprocessing import DEFAULT as DEFAULT_PREPROCESSING
from . import common
from .args import image_size, model_name, non_negative_int, positive_int

HELP = 'images per second of every engine on this machine'
DESCRIPTION = ('Images per second of DLA on this machine, every engine measured side by side '
               '(Paddle eager; Paddle Inference, OpenVINO and onnxruntime in fp32, and bf16 '
               'where the CPU has it; INT8 (paddle-dla quantize) when NNCF is installed, a '
               'classifier\'s beside NNCF\'s INT8 with NNCF\'s defaults; PyTorch eager and '
               'channels-last when installed), each in its own process, taking turns round '
               'by round; with GFLOP/s against this machine\'s measured GEMM peak, logit '
               'errors against Paddle eager and the memory one run takes.')
EPILOG = """\
examples:
  paddle-dla bench --models dla_34,dla_60,dla_102 --batch-sizes 1,8
  paddle-dla bench --engines "paddle fp32,openvino fp32"   # Paddle eager always runs too
  paddle-dla bench --engines "openvino int8,nncf int8"     # INT8: ours beside NNCF's
  paddle-dla bench --quick                      # one small variant, one run: a smoke test
  # CenterNet beside its PyTorch reference (torchvision deform_conv2d), from a checkout
  paddle-dla bench --models centernet_dla34 --img-size 512 --batch-sizes 1
"""
QUICK = {'models': 'dla_46_c', 'batch_sizes': '1', 'rounds': 1, 'warmup': 0}
ENGINE_NAMES = BENCH_ENGINES


def variants(text):
    return ','.join(model_name(n.strip()) for n in text.split(',') if n.strip())


def engine_list(text):
    """Engines as the table names them (``openvino fp32``), or as ``--engine`` elsewhere
    names them (``openvino``: each precision this machine runs)."""
    names = set()
    for name in (n.strip() for n in text.split(',') if n.strip()):
        matches = [e for e in ENGINE_NAMES if e == name or e.split()[0] == name]
        if not matches:
            raise argparse.ArgumentTypeError(
                f'unknown engine {name!r}; choose from: {", ".join(ENGINE_NAMES)} (or '
                f'{", ".join(ENGINES)}, torch for all of theirs)')
        names.update(matches)
    if not names:
        raise argparse.ArgumentTypeError('no engine named')
    return names


def batch_sizes(text):
    return ','.join(str(positive_int(n)) for n in text.split(','))


def configure(p):
    p.add_argument('--models', default='dla_34', type=variants,
                   help='comma list of variants, or dense models such as centernet_dla34 '
                        '(default: %(default)s)')
    p.add_argument('--batch-sizes', default='1,8', type=batch_sizes,
                   help='comma list of batch sizes (default: %(default)s)')
    p.add_argument('--img-size', type=image_size, default=DEFAULT_PREPROCESSING.img_size,
                   help='input size (default: %(default)s)')
    p.add_argument('--rounds', type=positive_int, default=5,
                   help='rounds; in each, every engine is timed for about half a second in '
                        'turn, and the median over the rounds is reported (default: '
                        '%(default)s)')
    p.add_argument('--warmup', type=non_negative_int, default=2,
                   help='untimed runs per engine (default: %(default)s)')
    p.add_argument('--threads', type=positive_int, default=None,
                   help='CPU threads (default: all)')
    p.add_argument('--engines', '--engine', type=engine_list,
                   help=f'comma list to restrict the engines, of: {", ".join(ENGINE_NAMES)} '
                        f'(default: all that this machine runs)')
    p.add_argument('--json', metavar='FILE', help='also write the results here (default: none)')
    p.add_argument('--quick', action='store_true',
                   help='dla_46_c, batch 1, one timed run, no photographs: a smoke test '
                        '(default: off)')


def uses_torch(args):
    return True  # PyTorch's engines are measured when it is installed


def run(args):
    if args.quick:
        for key, value in QUICK.items():
            setattr(args, key, value)
    from ..benchmarking.runner import run_benchmark
    run_benchmark(args.models.split(','), [int(b) for b in args.batch_sizes.split(',')],
                  args.rounds, args.warmup, args.img_size, args.threads,
                  args.engines, with_photos=not args.quick,
                  json_path=args.json)
    return 0


def main(argv=None, prog='throughput.py'):
    return common.script_main(sys.modules[__name__], prog, argv)
