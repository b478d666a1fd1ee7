"""Paddle ``.pdparams`` back to a PyTorch state dict that timm's ``dla*`` loads strictly,
so models fine-tuned in Paddle can go back to PyTorch."""
import argparse

import numpy as np

from ..atomic import atomic_output, same_file
from ..checkpoint import check_state_dict, load_pdparams, to_numpy
from ..dla import state_num_classes
from ..cli_args import ArgumentParser, variant_name
from ..errors import UsageError, exit_cleanly_on_sigterm, printable, run_command
from ..variants import VARIANTS
from .mapping import expected_torch_shapes, to_torch_key
from .pipeline import choose_variant
from .readers import write_safetensors


def paddle_to_torch_state(state, model=None):
    """``(variant, {torch key: numpy array})`` with timm's ``num_batches_tracked`` counters."""
    arrays = {to_torch_key(k): to_numpy(v) for k, v in state.items()}
    variant = choose_variant(arrays, model)
    expected = expected_torch_shapes(variant, state_num_classes(arrays))
    check_state_dict(expected, arrays, context=f'weights do not match {variant}')
    out = {}
    for key in expected:
        out[key] = arrays[key]
        if key.endswith('.running_var'):
            out[key[:-len('running_var')] + 'num_batches_tracked'] = np.zeros((), np.int64)
    return variant, out


def save_torch_state(state, path):
    """Write atomically as ``.pth`` (needs torch) or ``.safetensors`` (by the extension)."""
    with atomic_output(path) as tmp:
        if path.endswith('.safetensors'):
            write_safetensors(state, tmp)
        else:
            try:
                import torch
            except ImportError as exc:
                raise RuntimeError('writing .pth needs PyTorch (pip install torch); or '
                                   'write a .safetensors file, which needs no torch') from exc
            torch.save({k: torch.from_numpy(np.array(v)) for k, v in state.items()}, tmp)


EXAMPLES = """\
examples:
  python convert/paddle2torch.py --src dla_34_finetuned.pdparams --dst dla_34_finetuned.pth
  python convert/paddle2torch.py --src dla_60.pdparams --dst model.safetensors
then in PyTorch:
  model = timm.create_model('dla34', num_classes=...); model.load_state_dict(torch.load(...))
"""


def main(argv=None):
    exit_cleanly_on_sigterm()
    parser = ArgumentParser(
        prog='paddle2torch', epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description='Convert paddle_dla weights (.pdparams) into a PyTorch state dict that '
                    'timm\'s dla* models load with strict=True.')
    parser.add_argument('--src', required=True, help='.pdparams file')
    parser.add_argument('--dst', required=True, help='output .pth (or .safetensors) file')
    parser.add_argument('--model', type=variant_name,
                        help=f'variant (recognised when omitted): {", ".join(VARIANTS)}')
    parser.add_argument('--debug', action='store_true', help='show tracebacks on errors')
    args = parser.parse_args(argv)
    return run_command('paddle2torch', lambda: _convert(args), args.debug)


def _convert(args):
    if same_file(args.src, args.dst):
        raise UsageError(f'--dst {printable(args.dst)} is the source file itself; converting '
                         f'would replace it: choose another destination')
    variant, state = paddle_to_torch_state(load_pdparams(args.src), args.model)
    save_torch_state(state, args.dst)
    print(f'{printable(args.src)} -> {printable(args.dst)}: {variant}, '
          f'{state_num_classes(state)} classes, {len(state)} tensors (timm '
          f'{VARIANTS[variant].official_name}, strict)')
    return 0
