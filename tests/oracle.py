"""timm's PyTorch DLA with random weights: the independent reference our models must match.

Random weights alone make activations explode through 100+ layers, so every
BatchNorm gets random affine parameters and then has its running statistics
re-estimated on random batches (cumulative average, train-mode forwards).
"""
import functools

import numpy as np
import timm
import torch

from paddle_dla import get_config


def relative_error(ours, reference):
    ours, reference = np.asarray(ours, np.float64), np.asarray(reference, np.float64)
    return float(np.max(np.abs(ours - reference)) / max(1.0, np.max(np.abs(reference))))


def top1_agrees(ours, reference, min_gap=1e-2):
    """Same top-1 on every row whose reference top-2 gap exceeds ``min_gap``."""
    ours, reference = np.asarray(ours), np.asarray(reference)
    ours, reference = ours.reshape(len(ours), -1), reference.reshape(len(reference), -1)
    top2 = np.sort(reference, axis=1)[:, -2:]
    decided = (top2[:, 1] - top2[:, 0]) > min_gap
    return bool(np.all(ours.argmax(1)[decided] == reference.argmax(1)[decided]))


@torch.no_grad()
def _calibrate(model, seed, size, batches=3, batch_size=4):
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.uniform_(0.5, 1.5, generator=gen)
            m.bias.normal_(0.0, 0.2, generator=gen)
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
    head = model.get_classifier()
    if head is not None and getattr(head, 'bias', None) is not None:
        head.bias.normal_(0.0, 0.1, generator=gen)
    model.train()
    for _ in range(batches):
        model(torch.randn(batch_size, model.in_chans, size, size, generator=gen,
                          dtype=torch.float64))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = 0.1
    model.eval()


@functools.lru_cache(maxsize=None)
def _oracle_state(variant, num_classes, seed):
    torch.manual_seed(seed)
    model = timm.create_model(get_config(variant).official_name, pretrained=False,
                              num_classes=num_classes).double()
    _calibrate(model, seed, size=64)
    return {k: v.clone() for k, v in model.state_dict().items()}


def oracle(variant, num_classes=1000, seed=0, dtype=torch.float64, **timm_kwargs):
    """A fresh timm model of ``variant`` in eval mode, with the calibrated random weights."""
    state = _oracle_state(variant, num_classes, seed)
    model = timm.create_model(get_config(variant).official_name, pretrained=False,
                              num_classes=num_classes, **timm_kwargs).double()
    if timm_kwargs.get('features_only'):
        state = {k: v for k, v in state.items() if not k.startswith('fc.')}
    model.load_state_dict(state, strict=True)
    return model.to(dtype).eval()


def oracle_state_dict(variant, num_classes=1000, seed=0, dtype=torch.float32):
    """The oracle's state dict (timm layout) as ``dtype`` tensors."""
    return {k: (v.to(dtype) if v.is_floating_point() else v.clone())
            for k, v in _oracle_state(variant, num_classes, seed).items()}


def random_images(shape, seed=1):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@torch.no_grad()
def reference_logits(model, images):
    return model(images.to(next(model.parameters()).dtype)).double().numpy()
