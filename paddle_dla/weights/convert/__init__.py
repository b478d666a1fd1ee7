"""PyTorch DLA checkpoints (official, timm, safetensors, training wrappers) to Paddle state
dicts, strictly, and back."""
from ..checkpoint import to_numpy
from .layouts import dead_key_shapes, dead_projects, unwrap_state_dict
from .mapping import convert_state_dict, expected_torch_shapes, to_paddle_key, to_torch_key
from .pipeline import Conversion, convert_checkpoint, load_torch_state
from .readers import CheckpointReadError, read_checkpoint, read_safetensors, write_safetensors

__all__ = ['CheckpointReadError', 'Conversion', 'convert_checkpoint', 'convert_state_dict',
           'dead_key_shapes', 'dead_projects', 'expected_torch_shapes', 'load_torch_state',
           'read_checkpoint', 'read_safetensors', 'to_numpy', 'to_paddle_key', 'to_torch_key',
           'unwrap_state_dict', 'write_safetensors']
