"""``paddle-dla to-torch`` (and ``tools/paddle2torch.py``): Paddle weights back to a
PyTorch state dict that timm loads strictly."""
import sys

from ..core.atomic import same_file
from ..core.errors import UsageError, printable
from ..models.variants import VARIANTS
from . import common
from .args import variant_name

HELP = 'convert .pdparams back into a PyTorch (timm) state dict'
DESCRIPTION = ('Convert paddle_dla weights (.pdparams) into a PyTorch state dict that '
               'timm\'s dla* models load with strict=True.')
EPILOG = """\
examples:
  paddle-dla to-torch --src dla_34_finetuned.pdparams --dst dla_34_finetuned.pth
  paddle-dla to-torch --src dla_60.pdparams --dst model.safetensors   # needs no torch
then in PyTorch:
  model = timm.create_model('dla34', num_classes=...); model.load_state_dict(torch.load(...))
"""


def configure(parser):
    parser.add_argument('--src', required=True, metavar='FILE', help='.pdparams file (required)')
    parser.add_argument('--dst', required=True, metavar='FILE',
                        help='output .pth (needs torch) or .safetensors file (required)')
    parser.add_argument('--model', type=variant_name,
                        help=f'variant: {", ".join(VARIANTS)} (default: recognised from the '
                             f'weights)')


def uses_torch(args):
    return not args.dst.endswith('.safetensors')  # torch writes .pth


def run(args):
    if same_file(args.src, args.dst):
        raise UsageError(f'--dst {printable(args.dst)} is the source file itself; converting '
                         f'would replace it: choose another destination')
    from ..models.variants import state_num_classes
    from ..weights.checkpoint import load_pdparams
    from ..weights.convert.reverse import paddle_to_torch_state, save_torch_state
    variant, state = paddle_to_torch_state(load_pdparams(args.src), args.model)
    save_torch_state(state, args.dst)
    print(f'{printable(args.src)} -> {printable(args.dst)}: {variant}, '
          f'{state_num_classes(state)} classes, {len(state)} tensors (timm '
          f'{VARIANTS[variant].official_name}, strict)')
    return 0


def main(argv=None, prog='paddle2torch'):
    return common.script_main(sys.modules[__name__], prog, argv)
