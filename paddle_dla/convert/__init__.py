"""PyTorch (official / timm layout) state dicts to Paddle state dicts, strictly."""
from .mapping import (convert_state_dict, expected_torch_shapes, to_paddle_key, to_torch_key,
                      to_numpy)
from .readers import read_torch_checkpoint

__all__ = ['convert_state_dict', 'expected_torch_shapes', 'to_paddle_key', 'to_torch_key',
           'to_numpy', 'read_torch_checkpoint']
