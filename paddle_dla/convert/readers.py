"""Readers for PyTorch checkpoint files that never execute code from the file."""
import os


class CheckpointReadError(ValueError):
    """A checkpoint file could not be read safely."""


def read_torch_checkpoint(path):
    """Load a ``.pth`` file with ``torch.load(weights_only=True)``: tensors and containers only.

    torch is needed for this step alone; a pickle that asks to run code is refused.
    """
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f'no such checkpoint: {path}')
    try:
        import torch
    except ImportError as exc:
        raise CheckpointReadError(
            f'reading {os.path.basename(path)} needs PyTorch: pip install torch '
            f'(or convert a .safetensors file, which needs no torch)') from exc
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # truncated zip, foreign pickle, hostile globals, ...
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointReadError(
            f'{path} is not a readable PyTorch checkpoint: {first_line}') from exc
