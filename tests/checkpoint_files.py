"""Checkpoint files in every layout users bring, dressed from the oracle's weights."""
import torch
from safetensors.torch import save_file

from paddle_dla.weights.convert.layouts import dead_key_shapes
from oracle import oracle_state_dict


def official_layout(variant, seed=0):
    """As the official files: the dead ``project`` entries (random values) and counters."""
    state = dict(oracle_state_dict(variant))
    gen = torch.Generator().manual_seed(seed)
    for key, shape in dead_key_shapes(variant).items():
        state[key] = (torch.tensor(5, dtype=torch.long) if key.endswith('num_batches_tracked')
                      else torch.randn(shape, generator=gen))
    return state


def save_official(variant, path):
    torch.save(official_layout(variant), path)


def save_official_legacy(variant, path):
    """As the 2018 release files: PyTorch's legacy (pre-1.6, non-zip) serialisation."""
    torch.save(official_layout(variant), path, _use_new_zipfile_serialization=False)


def save_timm(variant, path, num_classes=1000):
    torch.save(oracle_state_dict(variant, num_classes=num_classes), path)


def save_safetensors(variant, path):
    state = {k: v.contiguous() for k, v in oracle_state_dict(variant).items()
             if not k.endswith('num_batches_tracked')}
    save_file(state, str(path))


def save_training_checkpoint(variant, path, num_classes=1000):
    """A DataParallel training checkpoint: ``{'state_dict': {'module.' + key: ...}, ...}``."""
    state = {'module.' + k: v for k, v in oracle_state_dict(variant, num_classes=num_classes).items()}
    torch.save({'epoch': 90, 'arch': variant, 'state_dict': state, 'best_prec1': 0.0}, path)
