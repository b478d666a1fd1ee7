"""Paddle ``.pdparams`` back to a PyTorch state dict that timm's ``dla*`` loads strictly,
so models fine-tuned in Paddle can go back to PyTorch."""
import numpy as np

from ...core.atomic import atomic_output
from ...models.variants import state_num_classes
from ..checkpoint import check_state_dict, to_numpy
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
