"""timm's PyTorch DLA with random weights: the independent reference our models must match.
Needs torch and timm: import it only in tests marked ``torch``.

Random weights alone make activations explode through 100+ layers, so every
BatchNorm gets random affine parameters and then has its running statistics
re-estimated on random batches (cumulative average, train-mode forwards).
"""
import functools

import timm
import torch

import paddle_dla
from paddle_dla import get_config
from paddle_dla.weights.convert import convert_state_dict


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


def paddle_model_from_oracle(variant, dtype='float64', num_classes=1000, **kwargs):
    """Our model in eval mode with the oracle's weights converted in memory."""
    model = paddle_dla.create_model(variant, num_classes=num_classes, **kwargs)
    if dtype == 'float64':
        model.to(dtype='float64')
    state = convert_state_dict(
        oracle_state_dict(variant, num_classes=num_classes,
                          dtype=torch.float64 if dtype == 'float64' else torch.float32),
        variant, dtype=dtype)
    if kwargs.get('features_only'):
        unused = model.unused_checkpoint_prefixes()
        state = {k: v for k, v in state.items() if not k.startswith(unused)}
    paddle_dla.load_state_dict_strict(model, state)
    model.eval()
    return model
